//===- W8A8Linear.cpp - upload and run one W8A8 linear ---------------------===//
#include "W8A8Linear.h"

#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/artifact/GpuArtifact.h"
#include "qopt-rt/half.h"

#include <cmath>
#include <vector>

namespace qcuda {

namespace {

bool deviceCopy(const void *src, size_t bytes, void **dst, const std::string &what,
                std::string *error) {
  cudaError_t err = cudaMalloc(dst, bytes);
  if (err != cudaSuccess) {
    *dst = nullptr;
    *error = what + ": cudaMalloc of " + std::to_string(bytes) +
             " bytes failed: " + cudaGetErrorString(err);
    return false;
  }
  err = cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    *error = what + ": copy to the device failed: " + cudaGetErrorString(err);
    return false;
  }
  return true;
}

} // namespace

W8A8Linear::~W8A8Linear() {
  if (bias_)
    cudaFree(bias_);
  if (blob_)
    cudaFree(blob_);
}

bool W8A8Linear::isW8A8(const qrt::ArtifactLinear &l) { return !l.activationQuant.empty(); }

bool W8A8Linear::upload(const qrt::ArtifactLinear &l, std::string *error) {
  const std::string what = "W8A8 linear '" + l.name + "'";
  if (blob_) {
    *error = what + ": already uploaded";
    return false;
  }
  // Weights and activations are of one type: cuBLASLt multiplies int8 by
  // int8 or E4M3 by E4M3.
  Q8Type type = Q8Type::kInt8;
  const char *layout = qrt::gpuW8A8LayoutId();
  const char *recompile = "qopt -wquant=w8a8 -target=sm80|sm89|sm90";
  if (l.activationQuant == "fp8_e4m3") {
    type = Q8Type::kFp8E4M3;
    layout = qrt::gpuW8A8Fp8LayoutId();
    recompile = "qopt -wquant=fp8 -method=smoothquant -target=sm89|sm90";
  } else if (l.activationQuant != "int8") {
    *error = what + ": activations '" + l.activationQuant +
             "' are not run by the CUDA executor (int8 or fp8_e4m3 W8A8)";
    return false;
  }
  if (l.layout != layout || !l.packed) {
    *error = what + ": layout '" + l.layout + "' with " + l.activationQuant +
             " activations, expected " + layout + " (recompile with " + recompile + ")";
    return false;
  }
  qrt::GpuW8A8BlobLayout bl;
  if (!qrt::gpuW8A8BlobLayout(l.outFeatures, l.inFeatures, &bl, error)) {
    *error = what + ": " + *error;
    return false;
  }
  if (uint64_t(bl.totalBytes) != l.packed->nbytes) {
    *error = what + ": blob of " + std::to_string(l.packed->nbytes) + " bytes, the layout needs " +
             std::to_string(bl.totalBytes);
    return false;
  }
  ActScaleMode mode = ActScaleMode::kPerToken;
  if (l.activationQuantMode == "per_tensor") {
    mode = ActScaleMode::kStatic;
    if (!(l.activationScale > 0.f && std::isfinite(l.activationScale))) {
      *error = what + ": per_tensor act_quant with scale " + std::to_string(l.activationScale) +
               "; it must be positive and finite";
      return false;
    }
  } else if (l.activationQuantMode != "per_token") {
    *error = what + ": act_quant mode '" + l.activationQuantMode + "' is not per_token or per_tensor";
    return false;
  }
  void *blob = nullptr;
  if (!deviceCopy(l.packed->data, size_t(bl.totalBytes), &blob, what, error)) {
    if (blob)
      cudaFree(blob);
    return false;
  }
  blob_ = blob;
  if (l.bias) {
    std::vector<float> b(size_t(l.outFeatures));
    for (size_t i = 0; i < b.size(); ++i)
      b[i] = l.bias->dtype == "bf16"
                 ? qrt::bf16ToF32(reinterpret_cast<const uint16_t *>(l.bias->data)[i])
                 : reinterpret_cast<const float *>(l.bias->data)[i];
    void *db = nullptr;
    if (!deviceCopy(b.data(), b.size() * 4, &db, what + " bias", error)) {
      if (db)
        cudaFree(db);
      return false;
    }
    bias_ = static_cast<float *>(db);
  }
  const uint8_t *base = static_cast<const uint8_t *>(blob_);
  codes_ = base + bl.codesOffset;
  scales_ = reinterpret_cast<const float *>(base + bl.scalesOffset);
  name_ = l.name;
  N_ = l.outFeatures;
  K_ = l.inFeatures;
  type_ = type;
  mode_ = mode;
  staticScale_ = mode == ActScaleMode::kStatic ? l.activationScale : 0.f;
  return true;
}

ActQuantOut W8A8Linear::inputSpec(void *q, float *scales) const {
  ActQuantOut o;
  o.type = type_;
  o.mode = mode_;
  o.staticScale = staticScale_;
  o.q = q;
  o.scales = scales;
  return o;
}

bool W8A8Linear::run(W8A8Gemm &gemm, const void *xq, const float *xScales, int64_t M, void *y,
                     void *workspace, cudaStream_t stream, std::string *error) const {
  if (!blob_) {
    *error = "W8A8 linear: run before a successful upload";
    return false;
  }
  if (M == 0)
    return true;
  W8A8GemmArgs a;
  a.type = type_;
  a.xq = xq;
  a.xScales = xScales;
  a.wq = codes_;
  a.wScales = scales_;
  a.bias = bias_;
  a.y = y;
  a.yType = DType::kBF16;
  a.M = M;
  a.N = N_;
  a.K = K_;
  a.accum = workspace;
  if (!gemm.run(a, stream, error)) {
    *error = "W8A8 linear '" + name_ + "': " + *error;
    return false;
  }
  return true;
}

} // namespace qcuda
