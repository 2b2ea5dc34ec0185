//===- ReferenceExecutor.h - fp32 interpreter of QLLM IR ------*- C++ -*-===//
//
// The oracle for every kernel and the engine of calibration: runs the
// `@forward` function of a QLLM module on the CPU in fp32, GEMMs through
// BLAS on all cores.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_EXEC_REFERENCEEXECUTOR_H
#define QOPT_EXEC_REFERENCEEXECUTOR_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "qopt/Weights/WeightStore.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qopt {

/// A dense fp32 tensor, row-major.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numElements() const;
};

/// Called after every op of `@forward` except `qllm.param` and
/// `func.return`, in program order. `input` is the op's first operand (for
/// `qllm.embedding`: the token ids as floats, shape [batch, seq]); `output`
/// its result. Both are only valid during the call. Calibration hooks the
/// `qllm.linear` inputs through it.
using ExecObserver = std::function<void(mlir::Operation *op, const Tensor &input,
                                        const Tensor &output)>;

/// Wall time the executor spent per op name ("qllm.linear", ...), summed
/// over calls since the last resetProfile().
struct OpProfile {
  std::string opName;
  double seconds = 0;
  int64_t calls = 0;
};

struct ExecutorOptions {
  /// Threads for BLAS (sets openblas_set_num_threads, process-wide) and for
  /// the executor's own elementwise/attention loops. 0 = all cores.
  int threads = 0;
  /// Optional per-op hook (see ExecObserver).
  ExecObserver observer;
  /// Accumulate per-op wall time (see profile()).
  bool profile = false;
};

/// Runs one forward at a time (the BLAS thread count is process-wide
/// state it adjusts); use one executor per thread only with threads = 1.
class ReferenceExecutor {
public:
  /// Checks that every op of `@forward` is supported and every weight is in
  /// the store; null with *error otherwise. The module and store must
  /// outlive the executor. Weights are converted to fp32 here, once
  /// (fp32 tensors of the store are used in place, without a copy).
  static std::unique_ptr<ReferenceExecutor>
  create(mlir::ModuleOp module, const WeightStore &store, std::string *error,
         const ExecutorOptions &options = ExecutorOptions());
  /// Interprets any single-block function of QLLM ops (calibration runs
  /// one outlined decoder layer this way). Each argument is either integer
  /// token ids [batch, seq] (at most one such argument) or a float
  /// activation; it may return several values. Weights are loaded as in
  /// create(). Use run(), not forward().
  static std::unique_ptr<ReferenceExecutor>
  createForFunction(mlir::func::FuncOp func, const WeightStore &store, std::string *error,
                    const ExecutorOptions &options = ExecutorOptions());
  ~ReferenceExecutor();

  /// Runs the function on `args`, one per function argument: float
  /// activations as they are (moved from, shape checked against the
  /// argument's static dims), token ids as integral float values [batch,
  /// seq]. `*results` receives the returned values in order.
  bool run(std::vector<Tensor> args, std::vector<Tensor> *results, std::string *error);

  /// Runs a batch of equal-length token sequences; returns logits
  /// [batch, seq, vocab]. False with *error on bad input (ragged batch,
  /// token id out of range).
  bool forward(const std::vector<std::vector<int32_t>> &batch, Tensor *logits,
               std::string *error);

  /// Vocabulary size (the lm_head's output features).
  int64_t vocabSize() const;

  /// Replaces the per-op hook (an empty function removes it).
  void setObserver(ExecObserver observer);
  /// Per-op wall time, in order of first appearance (empty unless
  /// ExecutorOptions::profile).
  std::vector<OpProfile> profile() const;
  void resetProfile();

private:
  struct Impl;
  explicit ReferenceExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Greedy continuation: appends `maxNewTokens` argmax tokens (stopping after
/// `eos` if given; the eos token is kept). `*generated` receives the new
/// tokens only, not the prompt. Ties go to the lowest id, as torch.argmax.
/// Recomputes the whole prefix each step (the reference has no KV cache: it
/// is the oracle, not the server).
bool greedyGenerate(ReferenceExecutor &exec, std::vector<int32_t> prompt,
                    int maxNewTokens, std::optional<int32_t> eos,
                    std::vector<int32_t> *generated, std::string *error);

/// Perplexity under the shared protocol: non-overlapping windows of
/// `ctx` tokens from the start, the first `chunks` of them (all if 0),
/// each scored alone, mean NLL over every predicted position. Several
/// windows share one forward when their logits fit a fixed memory budget.
/// Shows "windows i/N" on stderr when it is a terminal.
struct PerplexityResult {
  double perplexity = 0;
  double meanNll = 0;
  int64_t windows = 0;
  int64_t predicted = 0;
};
bool evaluatePerplexity(ReferenceExecutor &exec, const std::vector<int32_t> &tokens,
                        int64_t ctx, int64_t chunks, PerplexityResult *result,
                        std::string *error);

} // namespace qopt

#endif
