//===- CpuModelExecutor.h - the decoder forward pass on the CPU -*- C++ -*-===//
//
// Implements the serving ModelExecutor for a Llama-family decoder: embedding,
// rms_norm, q/k/v/o and gate/up/down projections (quantized ones through
// qgemm, dequantized in registers; fp32/bf16 ones through a threaded float
// GEMM; q/k/v and gate/up one GEMM each when the weights are fused, their
// input prepared by rms_norm / SwiGLU in the same pass), rotary fused with the paged KV-cache write, paged causal GQA
// attention through the block tables, SwiGLU, residuals, final norm and the
// lm_head for the rows that need logits.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_MODEL_CPUMODELEXECUTOR_H
#define QOPT_RT_MODEL_CPUMODELEXECUTOR_H

#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/model/ModelWeights.h"
#include "qopt-rt/serving/Executor.h"
#include "qopt-rt/serving/KVCache.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt::kernels {
class ThreadPool;
}

namespace qrt::model {

/// Knobs of the executor.
struct ExecutorOptions {
  /// Activations of the quantized GEMMs: Float matches the compiler's
  /// reference executor; Int8 is faster with a small extra error.
  kernels::Activations activations = kernels::Activations::Float;
  /// Pool for every kernel; null = ThreadPool::global().
  kernels::ThreadPool *pool = nullptr;
};

/// The CPU forward pass. Holds references to the weights and the KV pool,
/// which must outlive it (the weights: what the views point to). Called from one thread at a time.
class CpuModelExecutor : public serving::ModelExecutor {
public:
  /// Null with *error (one line) when the weights are inconsistent or the
  /// KV pool's shape does not match the model.
  static std::unique_ptr<CpuModelExecutor>
  create(const ModelWeights &weights, serving::KVCache &kv,
         const ExecutorOptions &options, std::string *error);
  ~CpuModelExecutor() override;

  int32_t vocabSize() const override { return w_.dims.vocab; }
  bool execute(const serving::StepBatch &batch, float *logits,
               std::string *error) override;
  /// As execute(), but writes the logits of every token of the batch
  /// (numTokens() rows, in batch order) instead of the sampled rows:
  /// perplexity and prompt logprobs.
  bool executeAllLogits(const serving::StepBatch &batch, float *logits,
                        std::string *error);

  const ModelWeights &weights() const { return w_; }

private:
  CpuModelExecutor(const ModelWeights &w, serving::KVCache &kv,
                   const ExecutorOptions &o);
  bool run(const serving::StepBatch &batch, float *logits, bool allRows,
           std::string *error);
  std::string checkBatch(const serving::StepBatch &batch) const;

  ModelWeights w_; ///< views only: a copy is cheap
  serving::KVCache &kv_;
  ExecutorOptions opt_;
  kernels::ThreadPool *pool_;
  std::vector<float> invFreq_;
  // Norm weights in fp32 (small; converted once).
  std::vector<std::vector<float>> inNorm_, postNorm_;
  std::vector<float> finalNorm_;
  std::vector<float> fp8Table_; ///< fp8 e4m3 codes 0..126 decoded (KV)
  // Scratch reused across steps (grown on demand). qkv_ holds [T, Q + 2 KV]
  // rows (q, k, v side by side, fused or not), gateUp_ [T, 2 I] rows.
  std::vector<float> x_, h_, qkv_, attn_, gateUp_, act_, rows_, tmp_;
  // The quantized GEMMs' inputs, prepared by the pass that produces them:
  // rms_norm for q/k/v and gate/up, SwiGLU for down.
  kernels::PreparedActivations normed_, swiglu_;
};

/// Linear projection y[M, N] = x[M, K] W^T (+ bias) for any WeightFormat;
/// the float formats use a threaded fp32 loop. False with *error on a bad
/// view.
bool linearForward(const TensorView &w, const float *x, int64_t m, float *y,
                   const float *bias, kernels::Activations act,
                   kernels::ThreadPool &pool, std::string *error);

/// Rotary inverse frequencies as transformers computes them in fp32
/// (default, linear and llama3 scaling).
std::vector<float> ropeInvFreq(int32_t rotaryDim, double theta,
                               const RopeScaling &scaling);

} // namespace qrt::model

#endif // QOPT_RT_MODEL_CPUMODELEXECUTOR_H
