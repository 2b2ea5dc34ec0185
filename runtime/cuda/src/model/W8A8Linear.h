//===- W8A8Linear.h - one W8A8 linear of an artifact on the device -*- C++ -*-===//
//
// The executor's building block for linears with act_quant (SmoothQuant
// W8A8): uploads an artifact linear in a GPU W8A8 layout
// (cuda_w8a8_i8_pc: int8 codes [N, K] + fp32 scales [N]; cuda_w8a8_f8_pc:
// the same with E4M3 codes, sm89+; docs/artifact.md), tells the producing
// kernel in front how to quantize its input (ActQuant.h: int8 or E4M3, per
// token or with the static scale), and runs
// y = (xq . W^T) * xScale[m] * wScale[n] + bias through W8A8Gemm into a
// bf16 output. Plain C++ over the kernels' host API. Not run on a GPU yet.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_MODEL_W8A8LINEAR_H
#define QOPT_CUDA_MODEL_W8A8LINEAR_H

#include "qopt-cuda/ActQuant.h"
#include "qopt-cuda/W8A8Gemm.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qrt {
struct ArtifactLinear;
}

namespace qcuda {

class W8A8Linear {
public:
  W8A8Linear() = default;
  ~W8A8Linear();
  W8A8Linear(const W8A8Linear &) = delete;
  W8A8Linear &operator=(const W8A8Linear &) = delete;

  /// Whether the artifact linear is a W8A8 one (it has act_quant): the
  /// executor routes it here instead of the weight-only upload.
  static bool isW8A8(const qrt::ArtifactLinear &l);

  /// Copies the weight blob (and the bias, as fp32) to the current device.
  /// False with *error naming the linear for a layout that is not the one
  /// of its activation type (int8: cuda_w8a8_i8_pc, fp8_e4m3:
  /// cuda_w8a8_f8_pc), another activation type, a blob of the wrong size
  /// or a failed allocation.
  bool upload(const qrt::ArtifactLinear &l, std::string *error);

  int64_t outFeatures() const { return N_; }
  int64_t inFeatures() const { return K_; }

  /// What the producer of this linear's input (rmsNormQuant, swigluQuant)
  /// must write: int8 or E4M3 codes (the weights' type) into `q` [M, K],
  /// per-row scales into `scales` [M], per token or with the linear's
  /// static scale.
  ActQuantOut inputSpec(void *q, float *scales) const;

  /// Device bytes of workspace `run` needs for M rows (the int32 product).
  int64_t workspaceBytes(int64_t M) const { return M * N_ * 4; }

  /// Enqueues y [M, N] bf16 = (xq . W^T) * xScales[m] * wScales[n] + bias
  /// on `stream`; xq / xScales as inputSpec's producer wrote them,
  /// `workspace` at least workspaceBytes(M). False with *error naming the
  /// linear.
  bool run(W8A8Gemm &gemm, const void *xq, const float *xScales, int64_t M, void *y,
           void *workspace, cudaStream_t stream, std::string *error) const;

private:
  std::string name_;
  int64_t N_ = 0, K_ = 0;
  Q8Type type_ = Q8Type::kInt8;
  ActScaleMode mode_ = ActScaleMode::kPerToken;
  float staticScale_ = 0.f;
  void *blob_ = nullptr;          ///< device copy of the artifact blob
  const void *codes_ = nullptr;   ///< int8 or E4M3 [N, K] inside blob_
  const float *scales_ = nullptr; ///< fp32 [N] inside blob_
  float *bias_ = nullptr;         ///< fp32 [N] or null
};

} // namespace qcuda

#endif // QOPT_CUDA_MODEL_W8A8LINEAR_H
