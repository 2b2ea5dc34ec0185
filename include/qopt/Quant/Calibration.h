//===- Calibration.h - samples and layer-by-layer execution ----*- C++ -*-===//
//
// Calibration as llm-compressor and GPTQ do it: sequential, one decoder
// layer at a time. The inputs of layer i+1 are the outputs of layer i as
// already quantized, and only the hidden states between layers are kept, so
// peak memory is about one layer's weights plus the calibration activations,
// not the whole model.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_CALIBRATION_H
#define QOPT_QUANT_CALIBRATION_H

#include "mlir/IR/BuiltinOps.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Exec/ReferenceExecutor.h"
#include "qopt/Weights/WeightStore.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt {
class Tokenizer;
}

namespace qopt::quant {

struct CalibrationOptions {
  /// -calib: a text file, a comma-separated list of them, or a directory
  /// (its *.txt files in name order). Several texts are joined with a
  /// blank line between them.
  std::string file;
  int64_t samples = 128;  ///< -calib-samples
  int64_t seqlen = 512;   ///< -calib-seqlen
  uint64_t seed = 0;      ///< -seed
};

/// Tokenizes `options.file` (no special tokens) and draws `samples` windows
/// of `seqlen` tokens at seeded pseudo-random offsets (splitmix64, the same
/// on every machine; windows may overlap). False with *error naming the
/// file when it is missing, empty, or shorter than one window (saying how
/// many tokens it has and how many are needed).
bool sampleCalibration(const qrt::Tokenizer &tokenizer, const CalibrationOptions &options,
                       std::vector<std::vector<int32_t>> *samples, std::string *error);

/// The ops of one canonical decoder layer (see DecoderBuilder.h).
struct DecoderLayer {
  int64_t index = 0;
  qllm::RMSNormOp inputNorm, postAttentionNorm;
  qllm::LinearOp q, k, v, o, gate, up, down;
  qllm::RotaryOp qRotary, kRotary;
  qllm::AttentionOp attention;
  qllm::SwiGLUOp swiglu;
  qllm::AddOp attnResidual, mlpResidual;
};

/// Finds the layers of a canonical `@forward`. False with *error if the
/// function does not have the canonical shape.
bool findDecoderLayers(mlir::ModuleOp module, std::vector<DecoderLayer> *layers,
                       std::string *error);

/// Runs the decoder one layer at a time over calibration samples.
class LayerwiseRunner {
public:
  /// Embeds the samples (the hidden states of layer 0's input). The module
  /// and store must outlive the runner; weights are read from the store
  /// each time a layer runs, so a method's rewrites of layer i are seen
  /// when layer i advances.
  static std::unique_ptr<LayerwiseRunner> create(mlir::ModuleOp module, WeightStore &store,
                                                 std::vector<std::vector<int32_t>> samples,
                                                 int threads, std::string *error);
  ~LayerwiseRunner();

  const std::vector<DecoderLayer> &layers() const;

  /// Runs layer i on the current hidden states without advancing;
  /// `observer` sees every op of the layer (input = first operand, output =
  /// result), a mini-batch of samples at a time.
  bool observe(int64_t i, const ExecObserver &observer, std::string *error);
  /// Runs layer i with its current (possibly quantized) weights and makes
  /// its output the input of layer i + 1.
  bool advance(int64_t i, std::string *error);
  /// Hidden states entering the next layer to run, [samples, seqlen, hidden].
  const Tensor &hidden() const;
  /// Runs the ops after the last layer (final norm, lm_head) on hidden():
  /// logits [samples, seqlen, vocab] (tests compare them with a full
  /// forward; mind the size on a real vocabulary).
  bool finalLogits(Tensor *logits, std::string *error);
  /// Samples per mini-batch the layers run on (bounds activation memory).
  int64_t batchSize() const;

private:
  struct Impl;
  explicit LayerwiseRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace qopt::quant

#endif
