//===- Artifact.h - loader of a compiled qopt artifact (OUT.qopt) -*- C++ -*-===//
//
// A deployable artifact is a directory OUT.qopt/ with manifest.json,
// weights.bin (every tensor page-aligned), tokenizer.json, model.mlir and
// report.json; docs/artifact.md specifies it. The runtime owns the schema:
// this loader memory-maps weights.bin, validates the manifest (format,
// version, target ISA runnable on this CPU, every tensor in bounds and
// aligned) and exposes the model as plain structs. No LLVM/MLIR here.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_ARTIFACT_ARTIFACT_H
#define QOPT_RT_ARTIFACT_ARTIFACT_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qrt {

namespace kernels {
struct PackedView;
}

/// The manifest version this loader reads (and the compiler writes).
/// Version 2: a layer's q/k/v (gate/up) may be one fused linear "qkv"
/// ("gate_up") with "parts".
constexpr int kArtifactVersion = 2;
/// Alignment of every tensor in weights.bin (a page: tensors are mmapped).
constexpr size_t kArtifactAlign = 4096;

/// One tensor of weights.bin, as mapped in memory.
struct ArtifactTensor {
  std::string name;
  std::string dtype;          ///< "f32", "bf16", or "u8" for packed blobs
  std::vector<int64_t> shape; ///< logical shape; packed blobs: [nbytes]
  std::string layout;         ///< "row_major" or a kernels layout id (x86_i4_g128_n16, ...)
  const uint8_t *data = nullptr;
  size_t nbytes = 0;
};

/// One linear layer y = x W^T + b, W [outFeatures, inFeatures].
struct ArtifactLinear {
  std::string name;           ///< weight tensor name (HF name)
  int64_t outFeatures = 0, inFeatures = 0;
  std::string format;         ///< "f32", "bf16", "int4", "int8"; "fp8_e4m3" (GPU W8A8 only)
  std::string layout;         ///< "row_major" for floats, else a kernels layout id
  int64_t groupSize = 0;      ///< 0 for per-channel or float
  bool symmetric = false;
  int bits = 0;               ///< 4 or 8 for quantized, 0 for float
  const ArtifactTensor *packed = nullptr; ///< the kernel-layout blob (or the float matrix)
  const ArtifactTensor *bias = nullptr;   ///< or null
  /// W8A8: the input is quantized before the product. activationQuant is
  /// "" (none), "int8" or "fp8_e4m3"; activationQuantMode "per_token"
  /// (dynamic max|x| / qmax per row) or "per_tensor" (static
  /// activationScale).
  std::string activationQuant;
  std::string activationQuantMode;
  float activationScale = 0.0f;
  /// A fused linear (qkv, gate_up): the output rows of each original
  /// projection, in order (they sum to outFeatures); empty otherwise.
  std::vector<int64_t> parts;
};

/// One decoder layer.
struct ArtifactLayer {
  const ArtifactTensor *inputNorm = nullptr, *postAttentionNorm = nullptr;
  /// q/k/v and gate/up as written when the compiler did not fuse them;
  /// left empty (name "") when qkv / gateUp holds them.
  ArtifactLinear q, k, v, o, gate, up, down;
  /// Fused projections: rows q, k, v (parts [Q, KV, KV]) and gate, up
  /// (parts [I, I]); empty (parts.empty()) when the layer keeps them apart.
  ArtifactLinear qkv, gateUp;
  bool fusedQkv() const { return !qkv.parts.empty(); }
  bool fusedGateUp() const { return !gateUp.parts.empty(); }
  std::string kvCacheDtype;           ///< "" (unspecified: runtime default), "bf16", "f16", "int8", "fp8e4m3"
  std::vector<float> kScales, vScales; ///< per kv head (empty when not quantized)
};

/// The model's hyper-parameters (qllm.config of the IR).
struct ArtifactConfig {
  int64_t vocabSize = 0, hiddenSize = 0, intermediateSize = 0, numLayers = 0,
          numHeads = 0, numKvHeads = 0, headDim = 0, maxPositionEmbeddings = 0;
  double rmsNormEps = 1e-6, ropeTheta = 10000.0;
  std::string ropeType;  ///< "" / "default" or "llama3", "linear", ...
  double ropeFactor = 1.0, ropeLowFreqFactor = 1.0, ropeHighFreqFactor = 4.0;
  int64_t ropeOriginalMaxPositionEmbeddings = 0;
  bool tieWordEmbeddings = false;
  int64_t bosTokenId = -1, eosTokenId = -1;
};

/// The ISA the artifact was compiled for.
struct ArtifactTarget {
  std::string isa;                   ///< "host", "x86-64-v3", "x86-64-v4", or "sm80" / "sm89" / "sm90"
  std::vector<std::string> features; ///< required CPU features ("avx2", "fma", "avx512f", ...)
  /// "cpu", or "cuda" for the GPU targets, whose packed weights are in the
  /// GPU layouts (qopt-rt/artifact/GpuArtifact.h) and which run only on a
  /// GPU of computeCapability.
  std::string device = "cpu";
  int ccMajor = 0, ccMinor = 0;
  bool isCuda() const { return device == "cuda"; }
};

/// A loaded artifact; owns the weights.bin mapping (tensors point into it).
class Artifact {
public:
  ~Artifact();
  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;

  /// Opens OUT.qopt (a directory): maps weights.bin, parses and validates
  /// the manifest (format, version == kArtifactVersion, target runnable on this CPU —
  /// refuses with a clear message naming the missing ISA feature — every
  /// tensor in bounds and aligned). nullptr + *error on failure.
  static std::unique_ptr<Artifact> open(const std::string &path, std::string *error);
  /// As open(), but skips the CPU-feature check (tools that only inspect).
  static std::unique_ptr<Artifact> openForInspection(const std::string &path,
                                                     std::string *error);
  /// Opens an artifact of a GPU target (-target=sm80|sm89|sm90) for the
  /// CUDA executor; refuses a CPU artifact. The compute capability is
  /// checked against the device by the executor, not here.
  static std::unique_ptr<Artifact> openForCuda(const std::string &path, std::string *error);

  const ArtifactConfig &config() const { return config_; }
  const ArtifactTarget &target() const { return target_; }
  const std::vector<ArtifactLayer> &layers() const { return layers_; }
  const ArtifactTensor &embedding() const { return *embedding_; }
  const ArtifactTensor &finalNorm() const { return *finalNorm_; }
  /// The output projection; for tied embeddings it points at the embedding.
  const ArtifactLinear &lmHead() const { return lmHead_; }
  /// Tensor by name, or null.
  const ArtifactTensor *tensor(const std::string &name) const;
  /// All tensors, sorted by name.
  const std::vector<ArtifactTensor> &tensors() const { return tensors_; }
  /// <dir>/tokenizer.json ("" when the artifact has none).
  std::string tokenizerPath() const;
  /// <dir>/generation_config.json ("" when absent).
  std::string generationConfigPath() const;
  /// The artifact directory as given to open().
  std::string dir() const { return dir_; }
  /// The generated kernel libraries it carries: instruction set ("avx2",
  /// "avx512", "avx512vnni") -> path (docs/codegen.md); empty when none.
  const std::map<std::string, std::string> &kernelLibraries() const { return kernelLibraries_; }

private:
  Artifact() = default;
  /// What the caller will run the artifact on.
  enum class Use { CpuExecution, Inspection, CudaExecution };
  static std::unique_ptr<Artifact> openImpl(const std::string &path, Use use,
                                            std::string *error);

  std::string dir_;
  ArtifactConfig config_;
  ArtifactTarget target_;
  std::vector<ArtifactTensor> tensors_;      // sorted by name
  std::map<std::string, size_t> tensorIndex_;
  std::map<std::string, std::string> kernelLibraries_;
  std::vector<ArtifactLayer> layers_;
  const ArtifactTensor *embedding_ = nullptr, *finalNorm_ = nullptr;
  ArtifactLinear lmHead_;
  void *map_ = nullptr;
  size_t mapBytes_ = 0;
};

struct ArtifactLinear;
/// The kernels' view of a quantized linear (format "int4"/"int8") of an
/// opened artifact: what qrt::kernels::qgemm takes. False with *error for a
/// float linear.
bool packedView(const ArtifactLinear &linear, kernels::PackedView *view, std::string *error);

/// CPU features of this machine among those a target may require
/// ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "avx512f", "avx512bw", "avx512vl",
/// "avx512cd", "avx512dq", "avx512vnni"), minus any listed in the
/// environment variable QRT_DISABLE_CPU_FEATURES (comma-separated).
std::vector<std::string> hostCpuFeatures();
/// The features an ISA level requires ("x86-64-v3", "x86-64-v4"); empty
/// for an unknown name.
std::vector<std::string> isaFeatures(const std::string &isa);

} // namespace qrt

#endif
