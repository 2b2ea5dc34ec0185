//===- Evaluator.h - shapes and small values of a generic ONNX graph -*- C++ -*-===//
//
// The raising patterns need facts the graph only computes at run time: the
// shape a dynamic Reshape produces, the cos/sin tables of the rotary
// embedding, the causal mask. The evaluator runs the function abstractly for
// a few sample (batch, sequence) sizes: every value gets a concrete shape per
// sample, and values that do not depend on the token ids' contents (only on
// constants, small weights and Shape ops) also get their data. Activations
// get shapes only. Unknown ops make their results unknown, which no pattern
// accepts.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_TRANSFORMS_RAISEONNX_EVALUATOR_H
#define QOPT_LIB_TRANSFORMS_RAISEONNX_EVALUATOR_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"

#include <vector>

namespace qopt {
class WeightStore;
namespace raise {

/// What the evaluator knows of one value in one sample.
struct AbsTensor {
  enum class Kind : uint8_t { Float, Int, Bool };
  bool known = false; ///< shape known
  llvm::SmallVector<int64_t, 4> shape;
  bool hasData = false;
  Kind kind = Kind::Float;
  std::vector<double> f;  ///< data of Float tensors
  std::vector<int64_t> i; ///< data of Int and Bool tensors

  int64_t numel() const;
  bool isFloat() const { return kind == Kind::Float; }
  /// Element `k` as a double whatever the kind.
  double at(size_t k) const { return isFloat() ? f[k] : double(i[k]); }
};

/// Symbolic dimensions for AbsEvaluator::shapeIs.
constexpr int64_t kDimB = -1001;   ///< the batch size
constexpr int64_t kDimS = -1002;   ///< the sequence length
constexpr int64_t kDimAny = -1003; ///< anything

class AbsEvaluator {
public:
  /// Evaluates `func` for the sample sizes; the first argument must be the
  /// [batch, sequence] token ids. `store` (may be null) provides the data
  /// of small float weights (inv_freq, cos/sin caches).
  AbsEvaluator(mlir::func::FuncOp func, const WeightStore *store);

  unsigned numSamples() const { return unsigned(batch_.size()); }
  int64_t batch(unsigned s) const { return batch_[s]; }
  int64_t seqLen(unsigned s) const { return seq_[s]; }

  /// The value in sample `s`; an unknown value if never evaluated.
  const AbsTensor &get(mlir::Value v, unsigned s) const;
  /// True if v's shape is known in every sample and matches `pattern`,
  /// whose entries are sizes or kDimB / kDimS / kDimAny.
  bool shapeIs(mlir::Value v, llvm::ArrayRef<int64_t> pattern) const;
  /// True if v's data is known in every sample.
  bool hasData(mlir::Value v) const;
  /// The single element of a scalar (one-element) value whose data is known
  /// and equal in every sample.
  bool scalar(mlir::Value v, double *out) const;
  /// Integer data known and equal in every sample.
  bool constInts(mlir::Value v, std::vector<int64_t> *out) const;
  /// Makes `to` read as `from` (used when a pattern replaces a value).
  void alias(mlir::Value to, mlir::Value from);

private:
  void evaluate(mlir::Operation *op, unsigned s);
  std::vector<int64_t> batch_, seq_;
  const WeightStore *store_;
  llvm::DenseMap<mlir::Value, std::vector<AbsTensor>> values_;
  AbsTensor unknown_;
};

} // namespace raise
} // namespace qopt

#endif
