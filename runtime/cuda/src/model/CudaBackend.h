//===- CudaBackend.h - the CUDA executor as a plugin qrun loads -*- C++ -*-===//
//
// qrun runs CPU artifacts on machines with no CUDA at all, so it must not
// link libcudart / libcublas (they would have to be installed to start it,
// and loading them costs ~150 MiB of resident memory). The CUDA executor is
// built into a plugin, libqopt_cuda_backend.so, next to qrun; `qrun
// --device cuda` opens it (dlopen) and calls its one C function for a
// CudaBackend: the executor behind an interface of virtual functions, so
// qrun needs none of the plugin's symbols.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_MODEL_CUDABACKEND_H
#define QOPT_CUDA_MODEL_CUDABACKEND_H

#include "CudaModelExecutor.h"

#include <cstdint>
#include <string>

namespace qcuda {

/// Bumped whenever CudaBackend, CudaExecutorOptions or the factory change.
constexpr int kCudaBackendAbi = 4;
/// File name of the plugin, looked for next to the qrun executable (or at
/// $QOPT_CUDA_BACKEND).
constexpr const char *kCudaBackendFile = "libqopt_cuda_backend.so";
constexpr const char *kCudaBackendFactory = "qopt_cuda_backend_create";

/// What qrun uses of the CUDA executor.
class CudaBackend {
public:
  virtual ~CudaBackend() = default;
  virtual qrt::serving::ModelExecutor &executor() = 0;
  virtual bool executeAllLogits(const qrt::serving::StepBatch &batch, float *logits,
                                std::string *error) = 0;
  virtual int32_t numBlocks() const = 0;
  virtual int32_t blockSize() const = 0;
  virtual uint64_t weightBytes() const = 0;
  virtual uint64_t kvBytes() const = 0;
  virtual std::string deviceName() const = 0;
  virtual std::string kernelsSummary() const = 0;
};

} // namespace qcuda

extern "C" {
/// Null with *error when `abi` differs from the plugin's or the executor
/// cannot be created (no device, another compute capability, out of memory).
typedef qcuda::CudaBackend *(*qopt_cuda_backend_create_fn)(int abi, const qrt::Artifact *artifact,
                                                           const qcuda::CudaExecutorOptions *options,
                                                           std::string *error);
}

#endif // QOPT_CUDA_MODEL_CUDABACKEND_H
