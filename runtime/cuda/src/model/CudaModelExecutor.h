//===- CudaModelExecutor.h - the decoder forward pass on a CUDA GPU -*- C++ -*-===//
//
// serving::ModelExecutor over the qopt_cuda kernels, for artifacts written
// with -target=sm80|sm89|sm90: the weights are copied to the device once,
// the paged KV pool lives on the device (sized from its free memory), and
// each engine step uploads the StepBatch arrays in one copy and runs
// embedding -> per layer [RMSNorm, qkv GEMM, rotary + KV write, paged
// attention, o GEMM, residual + RMSNorm, gate_up GEMM, SwiGLU, down GEMM]
// -> final RMSNorm -> lm_head on the rows that need logits, which come back
// to the host (the engine samples there) or are sampled on the device
// (executeAndSample: only the token ids come back). Pure decode steps are padded to a
// batch-size bucket and replayed from a CUDA graph captured on the bucket's
// first step (DecodeGraphs.h). One stream, one thread at a time.
// docs/cuda.md ("Model executor") says what is validated.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_MODEL_CUDAMODELEXECUTOR_H
#define QOPT_CUDA_MODEL_CUDAMODELEXECUTOR_H

#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/serving/Executor.h"

#include <cstdint>
#include <memory>
#include <string>

namespace qcuda {

struct CudaExecutorOptions {
  /// Fraction of the device's free memory (after the weights and scratch
  /// are allocated) that the KV pool takes.
  double gpuMemoryUtilization = 0.9;
  /// Upper bound of the KV pool's blocks (0: as many as the memory gives).
  int64_t maxBlocks = 0;
  /// Largest number of tokens one step carries (sizes the scratch).
  int32_t maxBatchedTokens = 512;
  /// Longest sequence (prompt + output) the engine lets through. Sizes the
  /// fixed block tables and decode workspace of the CUDA graphs; 0: decode
  /// steps are neither padded nor captured.
  int32_t maxModelLen = 0;
  /// Most sequences one step holds (the engine's max_num_seqs): the largest
  /// graph bucket is the first of 1, 2, 4, .., 64 that holds it. 0: 64.
  int32_t maxNumSeqs = 0;
  /// Capture pure decode steps as CUDA graphs, one per batch-size bucket
  /// (QCUDA_NO_GRAPHS=1 in the environment turns them off as well).
  bool cudaGraphs = true;
  /// Draw tokens on the device (canSampleOnDevice): only token ids come
  /// back, not logits. Seeded draws use the device's Philox stream
  /// (Sampling.h), not the host sampler's. False: the engine samples.
  bool deviceSampling = true;
  int device = 0;
};

/// The device, in words, and whether there is one: "" + false with *why
/// when no CUDA device can be used.
bool cudaDeviceAvailable(int device, std::string *description, std::string *why);

class CudaModelExecutor : public qrt::serving::ModelExecutor {
public:
  /// Null with *error (one line): no device, an artifact compiled for
  /// another compute capability ("artifact compiled for sm80, this GPU is
  /// sm90 (9.0)"), a weight the GPU kernels cannot run, or out of memory.
  /// `artifact` must outlive the executor only during create (weights are
  /// copied).
  static std::unique_ptr<CudaModelExecutor> create(const qrt::Artifact &artifact,
                                                   const CudaExecutorOptions &options,
                                                   std::string *error);
  ~CudaModelExecutor() override;

  int32_t vocabSize() const override;
  bool execute(const qrt::serving::StepBatch &batch, float *logits,
               std::string *error) override;
  bool canSampleOnDevice() const override;
  /// lm_head rows -> qcuda::sampleTokens -> the token ids copied back.
  bool executeAndSample(const qrt::serving::StepBatch &batch,
                        const std::vector<qrt::serving::SampleSpec> &rows, int32_t *tokens,
                        std::string *error) override;
  /// Logits of every token of the batch (numTokens() rows): perplexity.
  bool executeAllLogits(const qrt::serving::StepBatch &batch, float *logits,
                        std::string *error);

  /// Blocks of the device KV pool (the engine's BlockPool must use this);
  /// the pool holds one more, the padding rows' block.
  int32_t numBlocks() const;
  int32_t blockSize() const;
  /// Bytes of device memory the weights and the KV pool take.
  uint64_t weightBytes() const;
  uint64_t kvBytes() const;
  /// "NVIDIA H100 80GB HBM3 (sm90, 9.0)".
  /// Which GEMM kernels run: "generated for sm_90a, 64 of 64 packed
  /// weights", or "generic (...)" saying why.
  std::string kernelsSummary() const;
  std::string deviceName() const;

  struct Impl;

private:
  explicit CudaModelExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace qcuda

#endif // QOPT_CUDA_MODEL_CUDAMODELEXECUTOR_H
