//===- CudaBackendPlugin.cpp - libqopt_cuda_backend.so's entry point ------===//
#include "CudaBackend.h"

namespace {

class Backend final : public qcuda::CudaBackend {
public:
  explicit Backend(std::unique_ptr<qcuda::CudaModelExecutor> x) : x_(std::move(x)) {}
  qrt::serving::ModelExecutor &executor() override { return *x_; }
  bool executeAllLogits(const qrt::serving::StepBatch &batch, float *logits,
                        std::string *error) override {
    return x_->executeAllLogits(batch, logits, error);
  }
  int32_t numBlocks() const override { return x_->numBlocks(); }
  int32_t blockSize() const override { return x_->blockSize(); }
  uint64_t weightBytes() const override { return x_->weightBytes(); }
  uint64_t kvBytes() const override { return x_->kvBytes(); }
  std::string deviceName() const override { return x_->deviceName(); }
  std::string kernelsSummary() const override { return x_->kernelsSummary(); }

private:
  std::unique_ptr<qcuda::CudaModelExecutor> x_;
};

} // namespace

extern "C" __attribute__((visibility("default"))) qcuda::CudaBackend *
qopt_cuda_backend_create(int abi, const qrt::Artifact *artifact,
                         const qcuda::CudaExecutorOptions *options, std::string *error) {
  if (abi != qcuda::kCudaBackendAbi) {
    *error = "the CUDA backend (" + std::string(qcuda::kCudaBackendFile) + ") has ABI version " +
             std::to_string(qcuda::kCudaBackendAbi) + ", qrun expects " + std::to_string(abi) +
             " (rebuild them together)";
    return nullptr;
  }
  try {
    auto x = qcuda::CudaModelExecutor::create(*artifact, *options, error);
    return x ? new Backend(std::move(x)) : nullptr;
  } catch (const std::exception &e) {
    *error = std::string("CUDA backend: ") + e.what();
    return nullptr;
  }
}
