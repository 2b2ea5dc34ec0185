//===- ArtifactWriter.cpp - the compiler side of OUT.qopt ------------------===//
//
// Walks the canonical decoder's @forward (embedding, 2 rms_norms + 7
// linears + 1 attention per layer, final rms_norm, lm_head), plans every
// tensor at a 4096-byte-aligned offset in name order, streams weights.bin
// one tensor at a time (a quantized linear is read with loadQuantized and
// packed with the runtime's own packer, so the layout cannot drift from the
// kernels'), then writes the manifest. docs/artifact.md is the schema;
// runtime/src/artifact/Artifact.cpp reads it.
//
//===----------------------------------------------------------------------===//
#include "qopt/CodeGen/ArtifactWriter.h"

#include "qopt-rt/kernels/gen/Registry.h"

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/ModelConfig.h"
#include "qopt/Quant/QuantFormat.h"
#include "qopt/Quant/QuantReport.h"
#include "qopt/Quant/Quantizer.h"
#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/artifact/GpuArtifact.h"
#include "qopt-cuda/gen/AbiVersion.h"
#include "qopt-rt/half.h"
#include "qopt-rt/kernels/PackedLayout.h"
#include "qopt-rt/kernels/gen/Registry.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <cstring>
#include <map>

namespace qopt {

namespace {


/// How one tensor of weights.bin is produced.
struct TensorPlan {
  std::string name;
  const WeightEntry *entry = nullptr;
  bool packed = false;
  qllm::QuantAttr quant;             // packed only
  int64_t rows = 0, cols = 0;        // packed only
  qrt::kernels::PackedFormat format; // packed only (the GPU layouts read the same fields)
  /// GPU targets: a W8A8 weight (its linear has act_quant), stored in
  /// the W8A8 layout (int8 codes + fp32 scales) instead of a weight-only one.
  bool w8a8 = false;
  /// With w8a8: the codes are fp8_e4m3 (-wquant=fp8 -method=smoothquant),
  /// stored as they are in the FP8 W8A8 layout.
  bool fp8 = false;
  std::string dtype;                 // "f32", "bf16", "u8"
  std::vector<int64_t> shape;
  std::string layout;
  uint64_t offset = 0, nbytes = 0;
  /// Float tensors whose bytes can be copied as they are.
  bool rawCopy = false;
  /// A fused tensor: the plans of its parts, whose rows it holds one after
  /// the other (packed: codes / scales / zeros concatenated, then packed
  /// as one matrix). A fused bias lists its parts' bias plans, with name ""
  /// for a part without one (zeros); it is always f32.
  std::vector<TensorPlan> parts;
  std::vector<int64_t> partRows;
  bool fusedBias = false;
};

class Writer {
public:
  Writer(mlir::ModuleOp module, const WeightStore &store, const ArtifactOptions &options,
         std::string *error)
      : module_(module), store_(store), options_(options), error_(error) {}

  bool run();

private:
  bool fail(const std::string &msg) {
    *error_ = msg;
    return false;
  }
  bool resolveTarget();
  bool collect();
  /// Plans the tensor behind `weight` (a qllm.param or qllm.qparam);
  /// returns its artifact name ("" on error).
  /// `w8a8`: the weight of a linear with act_quant.
  std::string planWeight(mlir::Value weight, const char *role, bool allowQuantized,
                         bool w8a8 = false);
  bool planFloat(const std::string &name);
  llvm::json::Object linearJson(mlir::Value weight, mlir::Value bias, mlir::Operation *op,
                                int64_t rows, int64_t cols, const std::string &where, bool *ok);
  /// Replaces the linears `keys` of `layer` (their JSON objects) by one
  /// fused linear `fusedKey` when their storage and act_quant agree.
  bool fuse(llvm::json::Object &layer, std::initializer_list<const char *> keys,
            const char *fusedKey, const std::string &fusedName);
  bool writeFused(llvm::raw_ostream &os, const TensorPlan &p);
  /// Bytes of a packed rows x cols matrix in the target's layout, and its
  /// layout id; false (error set) for a shape the target's kernels refuse.
  /// `w8a8`: GPU targets' W8A8 layout (`fp8`: its E4M3 variant).
  bool packedSize(const qrt::kernels::PackedFormat &format, int64_t rows, int64_t cols,
                  bool w8a8, bool fp8, std::string *layout, int64_t *bytes,
                  std::string *error) const;
  /// Packs `ref` in the target's layout into `buffer` (`nbytes` bytes).
  bool pack(const qrt::kernels::RefQuantMatrix &ref, const TensorPlan &p,
            std::vector<uint8_t> *buffer);
  bool writeWeights(const std::string &path);
  /// Generates and compiles (or finds cached) the kernels specialized for
  /// the packed tensors, copies them into <dir>/kernels/; sets kernels_.
  bool writeKernels(const std::string &dir);
  /// GPU targets: the weight-only GEMMs specialized and compiled by nvcc
  /// into kernels/<arch>.so (no nvcc: none, with summary.kernelNote).
  bool writeCudaKernels(const std::string &dir);
  /// Copies a built kernel library (source + one .so per target) into
  /// <dir>/kernels/ and records it in the manifest and the summary.
  bool installKernels(const std::string &dir, const std::vector<codegen::GemmShape> &plan,
                      const codegen::KernelLibraryFiles &files, const std::string &sourceName,
                      int abi);
  bool writeFiles(const std::string &dir);
  /// The manifest's "target": the ISA and CPU features, plus the device
  /// and compute capability for a GPU target.
  llvm::json::Object targetJson(llvm::json::Array features) const {
    llvm::json::Object t{{"isa", isa_}, {"features", std::move(features)}};
    if (gpu_) {
      t["device"] = "cuda";
      t["compute_capability"] = llvm::json::Array{gpu_->major, gpu_->minor};
    }
    return t;
  }

  mlir::ModuleOp module_;
  const WeightStore &store_;
  const ArtifactOptions &options_;
  std::string *error_;

  ModelConfig config_;
  std::string isa_;
  std::vector<std::string> features_;
  /// -target=sm80|sm89|sm90: GPU layouts, no generated CPU kernels.
  const qrt::GpuTargetInfo *gpu_ = nullptr;
  std::map<std::string, TensorPlan> plans_; // sorted by name: the file order
  llvm::json::Object model_;
  uint64_t totalBytes_ = 0;
  bool quantized_ = false;
  bool kvQuantized_ = false; ///< an attention stores its KV cache in 1 byte
  llvm::json::Value kernels_ = nullptr; ///< manifest "kernels"

public:
  ArtifactSummary summary;
};

bool Writer::resolveTarget() {
  const std::string &t = options_.target;
  if (t == "cpu" || t.empty()) {
    isa_ = "host";
    features_ = qrt::hostCpuFeatures();
  } else if (t == "x86-64-v3" || t == "x86-64-v4") {
    isa_ = t;
    features_ = qrt::isaFeatures(t);
  } else if ((gpu_ = qrt::findGpuTarget(t))) {
    isa_ = t;
  } else {
    return fail("-target: unknown target '" + t +
                "' (supported: cpu, x86-64-v3, x86-64-v4, sm80, sm89, sm90)");
  }
  return true;
}

bool Writer::packedSize(const qrt::kernels::PackedFormat &format, int64_t rows, int64_t cols,
                        bool w8a8, bool fp8, std::string *layout, int64_t *bytes,
                        std::string *error) const {
  if (gpu_ && w8a8) {
    qrt::GpuW8A8BlobLayout bl;
    if (!qrt::gpuW8A8BlobLayout(rows, cols, &bl, error))
      return false;
    *layout = fp8 ? qrt::gpuW8A8Fp8LayoutId() : qrt::gpuW8A8LayoutId();
    *bytes = bl.totalBytes;
    return true;
  }
  if (gpu_) {
    qcuda::GpuQuantFormat gf;
    gf.bits = format.bits;
    gf.groupSize = format.groupSize;
    gf.symmetric = format.symmetric;
    qrt::GpuBlobLayout bl;
    if (!qrt::gpuBlobLayout(gf, rows, cols, &bl, error))
      return false;
    *layout = qrt::gpuLayoutId(gf);
    *bytes = bl.totalBytes;
    return true;
  }
  qrt::kernels::PackedGeometry g;
  if (!qrt::kernels::validateFormat(format, error) ||
      !qrt::kernels::computeGeometry(format, rows, cols, &g, error))
    return false;
  *layout = qrt::kernels::layoutId(format);
  *bytes = g.totalBytes;
  return true;
}

bool Writer::pack(const qrt::kernels::RefQuantMatrix &ref, const TensorPlan &p,
                  std::vector<uint8_t> *buffer) {
  buffer->assign(p.nbytes, 0);
  std::string err;
  if (gpu_ && p.w8a8) {
    qrt::GpuW8A8BlobLayout bl;
    if (!qrt::gpuW8A8BlobLayout(ref.rows, ref.cols, &bl, &err) ||
        !(p.fp8 ? qrt::writeGpuW8A8Fp8Blob(ref, bl, buffer->data(), &err)
                : qrt::writeGpuW8A8Blob(ref, bl, buffer->data(), &err)))
      return fail("weight '" + p.name + "': cannot pack for the CUDA W8A8 GEMM: " + err);
    return true;
  }
  if (gpu_) {
    qcuda::GpuPackedHost host;
    qrt::GpuBlobLayout bl;
    if (!qcuda::packForGpu(ref, &host, &err) ||
        !qrt::gpuBlobLayout(host.format, ref.rows, ref.cols, &bl, &err))
      return fail("weight '" + p.name + "': cannot pack for the CUDA kernels: " + err);
    qrt::writeGpuBlob(host, bl, buffer->data());
    return true;
  }
  if (!qrt::kernels::packWeights(ref, p.format, buffer->data(), buffer->size(), &err))
    return fail("weight '" + p.name + "': cannot pack for the CPU kernels: " + err);
  return true;
}

bool Writer::planFloat(const std::string &name) {
  if (plans_.count(name))
    return true;
  const WeightEntry *e = store_.find(name);
  if (!e)
    return fail("weight '" + name + "' is not in the weight store");
  if (!isFloat(e->dtype))
    return fail("weight '" + name + "' has dtype " + dtypeName(e->dtype) + ", expected a float");
  TensorPlan p;
  p.name = name;
  p.entry = e;
  p.shape = e->shape;
  p.layout = "row_major";
  // f32 and bf16 keep their bytes (the reference executor reads exactly
  // these values); f16 / f64 / transposed tensors become f32.
  p.rawCopy = !e->transposed && (e->dtype == DType::F32 || e->dtype == DType::BF16);
  p.dtype = p.rawCopy && e->dtype == DType::BF16 ? "bf16" : "f32";
  p.nbytes = uint64_t(e->numElements()) * (p.dtype == "bf16" ? 2 : 4);
  plans_[name] = std::move(p);
  return true;
}

std::string Writer::planWeight(mlir::Value weight, const char *role, bool allowQuantized,
                               bool w8a8) {
  mlir::Operation *def = weight.getDefiningOp();
  if (auto param = llvm::dyn_cast_or_null<qllm::ParamOp>(def)) {
    std::string name = param.getName().str();
    return planFloat(name) ? name : "";
  }
  auto qparam = llvm::dyn_cast_or_null<qllm::QParamOp>(def);
  if (!qparam) {
    fail(std::string("the ") + role + " weight is not a qllm.param or qllm.qparam");
    return "";
  }
  std::string name = qparam.getName().str();
  auto type = qparam.getResult().getType();
  quant::Format f = quant::fromAttr(type.getQuant());
  auto unsupported = [&](const std::string &why) {
    fail("weight '" + name + "': format '" + f.str() + "' is not supported by -target=" +
         (options_.target.empty() ? "cpu" : options_.target) + " yet (" + why + ")");
    return std::string();
  };
  if (!allowQuantized)
    return unsupported(std::string("the ") + role + " must stay float");
  const char *kernelsName = gpu_ ? "the CUDA kernels" : "the CPU kernels";
  // FP8 W8A8 (cuBLASLt's E4M3 GEMM) is the one non-int format a GPU runs.
  const bool fp8 = gpu_ && w8a8 && f.kind == qllm::ElementKind::FP8E4M3;
  if (!fp8 && (f.kind != qllm::ElementKind::Int || (f.bits != 4 && f.bits != 8)))
    return unsupported(std::string(kernelsName) + " run int4 and int8");
  // The GPU layout checks its group sizes (multiples of 32) in packedSize.
  if (!gpu_ && f.groupSize != -1 &&
      (f.groupSize <= 0 || f.groupSize % qrt::kernels::kActBlock != 0))
    return unsupported("group sizes must be multiples of " +
                       std::to_string(qrt::kernels::kActBlock) + " or per-channel");

  // W8A8 on a GPU: cuBLASLt's int8 or E4M3 GEMM with one scale per output
  // channel.
  if (gpu_ && w8a8 && !(f.bits == 8 && f.groupSize == -1 && f.symmetric))
    return unsupported("a linear with act_quant (W8A8) needs int8 or fp8_e4m3 per-channel "
                       "symmetric weights, as -wquant=w8a8 or -wquant=fp8 makes them");
  if (plans_.count(name))
    return name;
  auto shape = type.getShape();
  if (shape.size() != 2) {
    fail("weight '" + name + "' is not a 2-D quantized matrix");
    return "";
  }
  TensorPlan p;
  p.name = name;
  p.packed = true;
  p.quant = type.getQuant();
  p.rows = shape[0];
  p.cols = shape[1];
  p.format.bits = int(f.bits);
  p.format.groupSize = f.groupSize == -1 ? 0 : int(f.groupSize);
  p.format.symmetric = f.symmetric;
  p.w8a8 = gpu_ && w8a8;
  p.fp8 = fp8;
  std::string err;
  int64_t bytes = 0;
  if (!packedSize(p.format, p.rows, p.cols, p.w8a8, p.fp8, &p.layout, &bytes, &err))
    return unsupported(err);
  p.dtype = "u8";
  p.nbytes = uint64_t(bytes);
  p.shape = {bytes};
  plans_[name] = std::move(p);
  quantized_ = true;
  return name;
}

llvm::json::Object Writer::linearJson(mlir::Value weight, mlir::Value bias, mlir::Operation *op,
                                      int64_t rows, int64_t cols, const std::string &where,
                                      bool *ok) {
  *ok = false;
  llvm::json::Object out;
  auto linear = llvm::dyn_cast_or_null<qllm::LinearOp>(op);
  const bool actQuant = linear && linear.getActQuant();
  const std::string actType =
      actQuant && linear.getActQuantType() ? linear.getActQuantType()->str() : "int8";
  if (gpu_ && actQuant && actType != "int8" && actType != "fp8_e4m3") {
    fail(where + ": act_quant_type '" + actType + "' is not run by the CUDA executor (-target=" +
         isa_ + " runs int8 and fp8_e4m3 W8A8 activations)");
    return out;
  }
  if (gpu_ && actQuant && actType == "fp8_e4m3" && !qrt::gpuTargetHasFp8(*gpu_)) {
    fail(where + ": fp8_e4m3 W8A8 needs FP8 tensor cores, which -target=" + isa_ +
         " lacks (use -target=sm89 or sm90, or -wquant=w8a8 for int8)");
    return out;
  }
  std::string name = planWeight(weight, where.c_str(), /*allowQuantized=*/true, actQuant);
  if (name.empty())
    return out;
  const TensorPlan &p = plans_[name];
  if (gpu_ && actQuant && p.w8a8 && p.fp8 != (actType == "fp8_e4m3")) {
    fail(where + ": weight '" + name + "' is " + (p.fp8 ? "fp8_e4m3" : "int8") +
         " and act_quant_type is " + actType + "; the CUDA W8A8 GEMM needs both the same type");
    return out;
  }
  if (gpu_ && (actQuant || p.w8a8) && p.w8a8 != actQuant) {
    fail(where + ": weight '" + name + "' " +
         (actQuant ? "is float; a linear with act_quant (W8A8) needs int8 or fp8_e4m3 "
                     "per-channel symmetric weights on -target=" + isa_
                   : std::string("is shared with a W8A8 linear but this one has no act_quant")));
    return out;
  }
  int64_t r = p.packed ? p.rows : (p.shape.size() == 2 ? p.shape[0] : -1);
  int64_t c = p.packed ? p.cols : (p.shape.size() == 2 ? p.shape[1] : -1);
  if (r != rows || c != cols) {
    fail(where + ": weight '" + name + "' is " + std::to_string(r) + "x" + std::to_string(c) +
         ", the config implies " + std::to_string(rows) + "x" + std::to_string(cols) +
         " (not the canonical decoder?)");
    return out;
  }
  out["weight"] = name;
  out["out_features"] = rows;
  out["in_features"] = cols;
  out["layout"] = p.layout;
  if (p.packed) {
    out["format"] = p.fp8 ? "fp8_e4m3" : p.format.bits == 4 ? "int4" : "int8";
    out["bits"] = p.format.bits;
    out["group_size"] = p.format.groupSize;
    out["symmetric"] = p.format.symmetric;
  } else {
    out["format"] = p.dtype;
    out["bits"] = 0;
    out["group_size"] = 0;
    out["symmetric"] = false;
  }
  out["bias"] = nullptr;
  if (bias) {
    std::string b = planWeight(bias, "bias", /*allowQuantized=*/false);
    if (b.empty())
      return out;
    out["bias"] = b;
  }
  out["act_quant"] = nullptr;
  if (actQuant) {
    llvm::json::Object aq;
    aq["mode"] = linear.getActQuant()->str();
    aq["type"] = linear.getActQuantType() ? linear.getActQuantType()->str() : "int8";
    aq["scale"] = linear.getActScale() ? linear.getActScale()->convertToDouble() : 0.0;
    out["act_quant"] = std::move(aq);
  }
  *ok = true;
  return out;
}

bool Writer::collect() {
  auto func = module_.lookupSymbol<mlir::func::FuncOp>("forward");
  if (!func)
    return fail("the module has no func.func @forward");
  if (!getConfigAttr(module_, &config_, error_))
    return false;
  qllm::EmbeddingOp embedding;
  qllm::LMHeadOp lmHead;
  std::vector<qllm::RMSNormOp> norms;
  std::vector<qllm::LinearOp> linears;
  std::vector<qllm::AttentionOp> attentions;
  func.walk([&](mlir::Operation *op) {
    if (auto e = llvm::dyn_cast<qllm::EmbeddingOp>(op))
      embedding = e;
    else if (auto n = llvm::dyn_cast<qllm::RMSNormOp>(op))
      norms.push_back(n);
    else if (auto l = llvm::dyn_cast<qllm::LinearOp>(op))
      linears.push_back(l);
    else if (auto a = llvm::dyn_cast<qllm::AttentionOp>(op))
      attentions.push_back(a);
    else if (auto h = llvm::dyn_cast<qllm::LMHeadOp>(op))
      lmHead = h;
  });
  const size_t L = size_t(config_.numLayers);
  if (!embedding || !lmHead || norms.size() != 2 * L + 1 || linears.size() != 7 * L ||
      attentions.size() != L)
    return fail("@forward is not the canonical decoder: expected 1 embedding, " +
                std::to_string(2 * L + 1) + " rms_norm, " + std::to_string(7 * L) +
                " linear, " + std::to_string(L) + " attention and 1 lm_head ops for " +
                std::to_string(L) + " layers");

  const int64_t H = config_.hiddenSize, I = config_.intermediateSize, D = config_.headDim;
  const int64_t qOut = config_.numHeads * D, kvOut = config_.numKvHeads * D;
  // What the CUDA executor's kernels take (docs/cuda.md): refused here, at
  // compile time, rather than when the artifact is loaded on the GPU.
  if (gpu_ && D != 64 && D != 128)
    return fail("-target=" + isa_ + ": head_dim " + std::to_string(D) +
                " is not supported by the CUDA attention kernels (64 or 128)");
  if (gpu_ && (H % 8 != 0 || I % 8 != 0))
    return fail("-target=" + isa_ + ": hidden_size " + std::to_string(H) +
                " and intermediate_size " + std::to_string(I) +
                " must be multiples of 8 for the CUDA row kernels");
  std::string emb = planWeight(embedding.getTable(), "embedding", false);
  if (emb.empty())
    return false;
  model_["embedding"] = emb;
  std::string fin = planWeight(norms.back().getWeight(), "final norm", false);
  if (fin.empty())
    return false;
  model_["final_norm"] = fin;
  bool ok;
  model_["lm_head"] = linearJson(lmHead.getWeight(), mlir::Value(), lmHead, config_.vocabSize, H,
                                 "lm_head", &ok);
  if (!ok)
    return false;

  llvm::json::Array layers;
  static const char *keys[7] = {"q", "k", "v", "o", "gate", "up", "down"};
  const int64_t outs[7] = {qOut, kvOut, kvOut, H, I, I, H};
  const int64_t ins[7] = {H, H, H, qOut, H, H, I};
  for (size_t i = 0; i < L; ++i) {
    llvm::json::Object layer;
    const std::string where = "layer " + std::to_string(i);
    std::string n0 = planWeight(norms[2 * i].getWeight(), "input norm", false);
    std::string n1 = planWeight(norms[2 * i + 1].getWeight(), "post-attention norm", false);
    if (n0.empty() || n1.empty())
      return false;
    layer["input_norm"] = n0;
    layer["post_attention_norm"] = n1;
    for (int j = 0; j < 7; ++j) {
      qllm::LinearOp op = linears[7 * i + j];
      layer[keys[j]] = linearJson(op.getWeight(), op.getBias(), op, outs[j], ins[j],
                                  where + " " + keys[j], &ok);
      if (!ok)
        return false;
    }
    // One GEMM instead of three (two) in the runtime. Tests switch fusion
    // off to compare against the separate projections.
    const char *noFusion = std::getenv("QOPT_ARTIFACT_NO_FUSION");
    if (!noFusion || !*noFusion || std::string(noFusion) == "0") {
      if (!fuse(layer, {"q", "k", "v"}, "qkv", names::attn(int64_t(i), "qkv_proj")) ||
          !fuse(layer, {"gate", "up"}, "gate_up", names::mlp(int64_t(i), "gate_up_proj")))
        return false;
    }
    qllm::AttentionOp att = attentions[i];
    llvm::json::Object kv;
    kv["dtype"] = att.getKvCacheDtype() ? llvm::json::Value(att.getKvCacheDtype()->str())
                                        : llvm::json::Value(nullptr);
    kvQuantized_ = kvQuantized_ || bool(att.getKvCacheDtype());
    auto scales = [](std::optional<llvm::ArrayRef<float>> s) -> llvm::json::Value {
      if (!s)
        return nullptr;
      llvm::json::Array a;
      for (float x : *s)
        a.push_back(double(x));
      return a;
    };
    kv["k_scales"] = scales(att.getKScales());
    kv["v_scales"] = scales(att.getVScales());
    layer["kv_cache"] = std::move(kv);
    layers.push_back(std::move(layer));
  }
  model_["layers"] = std::move(layers);

  // Offsets, in name order.
  uint64_t off = 0;
  for (auto &[name, p] : plans_) {
    p.offset = off;
    off += (p.nbytes + qrt::kArtifactAlign - 1) / qrt::kArtifactAlign * qrt::kArtifactAlign;
  }
  // The file ends right after the last tensor (no trailing padding).
  totalBytes_ = 0;
  for (auto &[name, p] : plans_)
    totalBytes_ = std::max(totalBytes_, p.offset + p.nbytes);
  return true;
}

bool Writer::fuse(llvm::json::Object &layer, std::initializer_list<const char *> keys,
                  const char *fusedKey, const std::string &fusedName) {
  std::vector<const llvm::json::Object *> objs;
  std::vector<const TensorPlan *> plans;
  for (const char *k : keys) {
    const llvm::json::Object *o = layer.getObject(k);
    auto w = o ? o->getString("weight") : std::nullopt;
    if (!w || !plans_.count(w->str()))
      return true;
    objs.push_back(o);
    plans.push_back(&plans_[w->str()]);
  }
  // Same storage (packed layout and K, or float dtype and K) and the same
  // activation quantization: one matrix, one kernel, one input.
  const TensorPlan &first = *plans[0];
  const int64_t cols = first.packed ? first.cols : first.shape[1];
  for (size_t j = 0; j < plans.size(); ++j) {
    const TensorPlan &p = *plans[j];
    if (p.packed != first.packed || p.layout != first.layout || p.dtype != first.dtype ||
        (p.packed ? p.cols : p.shape[1]) != cols || !p.parts.empty() ||
        *objs[j]->get("act_quant") != *objs[0]->get("act_quant"))
      return true;
  }
  // The fused tensors get names of their own; a model that already has a
  // tensor by that name keeps its projections apart.
  const std::string biasName =
      llvm::StringRef(fusedName).ends_with(".weight")
          ? fusedName.substr(0, fusedName.size() - 7) + ".bias"
          : fusedName + ".bias";
  if (store_.find(fusedName) || plans_.count(fusedName) || store_.find(biasName) ||
      plans_.count(biasName))
    return true;

  TensorPlan fused;
  fused.name = fusedName;
  fused.packed = first.packed;
  fused.quant = first.quant;
  fused.format = first.format;
  fused.w8a8 = first.w8a8;
  fused.fp8 = first.fp8;
  fused.dtype = first.dtype;
  fused.layout = first.layout;
  fused.cols = cols;
  fused.rawCopy = true;
  TensorPlan bias;
  bias.name = biasName;
  bias.fusedBias = true;
  bias.dtype = "f32";
  bias.layout = "row_major";
  bool anyBias = false;
  llvm::json::Array parts;
  for (size_t j = 0; j < plans.size(); ++j) {
    const TensorPlan &p = *plans[j];
    const int64_t rows = p.packed ? p.rows : p.shape[0];
    fused.rows += rows;
    fused.rawCopy = fused.rawCopy && p.rawCopy;
    fused.parts.push_back(p);
    fused.partRows.push_back(rows);
    parts.push_back(rows);
    TensorPlan b;
    if (auto bn = objs[j]->getString("bias")) {
      b = plans_[bn->str()];
      anyBias = true;
    }
    bias.parts.push_back(b);
    bias.partRows.push_back(rows);
  }
  if (fused.packed) {
    std::string err, layout;
    int64_t bytes = 0;
    if (!packedSize(fused.format, fused.rows, cols, fused.w8a8, fused.fp8, &layout, &bytes,
                    &err))
      return fail(fusedName + ": " + err);
    fused.nbytes = uint64_t(bytes);
    fused.shape = {bytes};
  } else {
    fused.shape = {fused.rows, cols};
    fused.nbytes = uint64_t(fused.rows * cols) * (fused.dtype == "bf16" ? 2 : 4);
  }
  bias.shape = {fused.rows};
  bias.nbytes = uint64_t(fused.rows) * 4;

  llvm::json::Object out = *objs[0];
  out["weight"] = fusedName;
  out["out_features"] = fused.rows;
  out["bias"] = anyBias ? llvm::json::Value(biasName) : llvm::json::Value(nullptr);
  out["parts"] = std::move(parts);
  for (const TensorPlan &p : fused.parts)
    plans_.erase(p.name);
  for (const TensorPlan &b : bias.parts)
    if (!b.name.empty())
      plans_.erase(b.name);
  plans_[fusedName] = std::move(fused);
  if (anyBias)
    plans_[biasName] = std::move(bias);
  for (const char *k : keys)
    layer.erase(k);
  layer[fusedKey] = std::move(out);
  return true;
}

/// The packer's view of quantized codes / scales / zeros (any struct with
/// those vectors) in the plan's format.
template <class Q>
static qrt::kernels::RefQuantMatrix refMatrix(const TensorPlan &p, int64_t rows, int64_t cols,
                                              const Q &q) {
  qrt::kernels::RefQuantMatrix ref;
  ref.rows = rows;
  ref.cols = cols;
  ref.bits = p.format.bits;
  ref.groupSize = p.format.groupSize;
  ref.symmetric = p.format.symmetric;
  ref.codes = q.codes.data();
  ref.scales = q.scales.data();
  ref.zeros = p.format.symmetric ? nullptr : q.zeros.data();
  return ref;
}

bool Writer::writeFused(llvm::raw_ostream &os, const TensorPlan &p) {
  if (p.fusedBias) {
    for (size_t j = 0; j < p.parts.size(); ++j) {
      std::vector<float> v = p.parts[j].name.empty()
                                 ? std::vector<float>(size_t(p.partRows[j]), 0.0f)
                                 : store_.readF32(*p.parts[j].entry);
      if (int64_t(v.size()) != p.partRows[j])
        return fail("bias '" + p.parts[j].name + "' has " + std::to_string(v.size()) +
                    " elements, expected " + std::to_string(p.partRows[j]));
      os.write(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(float));
    }
    return true;
  }
  if (!p.packed) {
    for (const TensorPlan &part : p.parts) {
      if (part.rawCopy) {
        os.write(reinterpret_cast<const char *>(part.entry->data), part.nbytes);
      } else {
        std::vector<float> f = store_.readF32(*part.entry);
        os.write(reinterpret_cast<const char *>(f.data()), f.size() * sizeof(float));
      }
    }
    return true;
  }
  // Packed: the parts' codes, scales and zeros row after row, packed as one.
  quant::QuantizedMatrix all;
  for (const TensorPlan &part : p.parts) {
    quant::QuantizedMatrix q;
    std::string err;
    if (!quant::loadQuantized(store_, part.name, part.quant, part.rows, part.cols, &q, &err))
      return fail("weight '" + part.name + "': " + err);
    all.codes.insert(all.codes.end(), q.codes.begin(), q.codes.end());
    all.scales.insert(all.scales.end(), q.scales.begin(), q.scales.end());
    all.zeros.insert(all.zeros.end(), q.zeros.begin(), q.zeros.end());
  }
  std::vector<uint8_t> buffer;
  if (!pack(refMatrix(p, p.rows, p.cols, all), p, &buffer))
    return false;
  os.write(reinterpret_cast<const char *>(buffer.data()), buffer.size());
  return true;
}

bool Writer::writeWeights(const std::string &path) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return fail(path + ": " + ec.message());
  uint64_t pos = 0;
  std::vector<uint8_t> buffer;
  for (auto &[name, p] : plans_) {
    os.write_zeros(unsigned(p.offset - pos));
    pos = p.offset;
    if (!p.parts.empty()) {
      if (!writeFused(os, p))
        return false;
    } else if (p.packed) {
      quant::QuantizedMatrix q;
      std::string err;
      if (!quant::loadQuantized(store_, name, p.quant, p.rows, p.cols, &q, &err))
        return fail("weight '" + name + "': " + err);
      if (!pack(refMatrix(p, q.rows, q.cols, q), p, &buffer))
        return false;
      os.write(reinterpret_cast<const char *>(buffer.data()), buffer.size());
    } else if (p.rawCopy) {
      os.write(reinterpret_cast<const char *>(p.entry->data), p.nbytes);
    } else {
      std::vector<float> f = store_.readF32(*p.entry);
      os.write(reinterpret_cast<const char *>(f.data()), f.size() * sizeof(float));
    }
    pos += p.nbytes;
  }
  os.close();
  if (os.has_error())
    return fail(path + ": write failed: " + os.error().message());
  return true;
}

llvm::json::Value configJson(const ModelConfig &c) {
  llvm::json::Object rope{{"rope_type", c.ropeScaling.type},
                          {"factor", c.ropeScaling.factor},
                          {"low_freq_factor", c.ropeScaling.lowFreqFactor},
                          {"high_freq_factor", c.ropeScaling.highFreqFactor},
                          {"original_max_position_embeddings",
                           c.ropeScaling.originalMaxPositionEmbeddings}};
  return llvm::json::Object{
      {"architecture", c.architecture},
      {"vocab_size", c.vocabSize},
      {"hidden_size", c.hiddenSize},
      {"intermediate_size", c.intermediateSize},
      {"num_hidden_layers", c.numLayers},
      {"num_attention_heads", c.numHeads},
      {"num_key_value_heads", c.numKvHeads},
      {"head_dim", c.headDim},
      {"max_position_embeddings", c.maxPositionEmbeddings},
      {"rms_norm_eps", c.rmsNormEps},
      {"rope_theta", c.ropeTheta},
      {"rope_scaling", std::move(rope)},
      {"tie_word_embeddings", c.tieWordEmbeddings},
      {"attention_bias", c.attentionBias},
      {"bos_token_id", c.bosTokenId ? llvm::json::Value(*c.bosTokenId) : nullptr},
      {"eos_token_id", c.eosTokenId ? llvm::json::Value(*c.eosTokenId) : nullptr},
  };
}

bool writeText(const std::string &path, const std::string &text, std::string *error) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec) {
    *error = path + ": " + ec.message();
    return false;
  }
  os << text;
  os.close();
  if (os.has_error()) {
    *error = path + ": write failed";
    return false;
  }
  return true;
}

bool Writer::writeKernels(const std::string &dir) {
  if (gpu_)
    return writeCudaKernels(dir);
  std::vector<codegen::GemmShape> plan;
  for (const auto &[name, p] : plans_)
    if (p.packed) {
      codegen::GemmShape g;
      g.bits = p.format.bits;
      g.groupSize = p.format.groupSize;
      g.symmetric = p.format.symmetric;
      g.rows = p.rows;
      g.cols = p.cols;
      g.users = {name};
      plan.push_back(std::move(g));
    }
  plan = codegen::normalizePlan(std::move(plan));
  std::vector<std::string> isas =
      codegen::kernelIsasForTarget(options_.target.empty() ? "cpu" : options_.target);
  if (!options_.generateKernels || plan.empty() || isas.empty())
    return true; // the runtime's generic kernels run
  codegen::KernelLibraryFiles files;
  std::string err;
  if (!codegen::buildKernelLibraries(plan, isas, options_.kernelBuild, &files, &err))
    return fail("kernel code generation: " + err);
  return installKernels(dir, plan, files, "kernels.cpp", qrt::kernels::gen::kGenAbiVersion);
}

bool Writer::installKernels(const std::string &dir, const std::vector<codegen::GemmShape> &plan,
                            const codegen::KernelLibraryFiles &files, const std::string &sourceName,
                            int abi) {
  if (auto ec = llvm::sys::fs::create_directories(dir + "/kernels"))
    return fail(dir + "/kernels: cannot create: " + ec.message());
  if (auto ec = llvm::sys::fs::copy_file(files.sourcePath, dir + "/kernels/" + sourceName))
    return fail(files.sourcePath + ": cannot copy: " + ec.message());
  llvm::json::Object libs;
  std::vector<std::string> targets;
  for (const auto &[target, path] : files.libraries) {
    const std::string rel = "kernels/" + target + ".so";
    if (auto ec = llvm::sys::fs::copy_file(path, dir + "/" + rel))
      return fail(path + ": cannot copy: " + ec.message());
    libs[target] = rel;
    targets.push_back(target);
  }
  llvm::json::Array shapes;
  for (const codegen::GemmShape &g : plan)
    shapes.push_back(llvm::json::Object{{"bits", g.bits},
                                        {"group_size", g.groupSize},
                                        {"symmetric", g.symmetric},
                                        {"rows", g.rows},
                                        {"cols", g.cols}});
  kernels_ = llvm::json::Object{{"abi", abi},
                                {"source", "kernels/" + sourceName},
                                {"libraries", std::move(libs)},
                                {"key", files.hash},
                                {"shapes", std::move(shapes)}};
  summary.kernelShapes = plan.size();
  summary.kernelIsas = targets;
  summary.kernelCacheHit = files.cacheHit;
  summary.kernelSeconds = files.seconds;
  return true;
}

bool Writer::writeCudaKernels(const std::string &dir) {
  // The weight-only GEMMs, specialized per packed shape with the effective
  // group size (per-channel = cols) the CUDA kernels index by. Tensors in
  // other GPU layouts (not cuda_i<bits>_...) have no generated kernels.
  std::vector<codegen::GemmShape> plan;
  for (const auto &[name, p] : plans_) {
    qcuda::GpuQuantFormat f;
    qcuda::GpuPackedGeometry geo;
    std::string why;
    if (!p.packed || !qrt::parseGpuLayoutId(p.layout, &f, &why) ||
        !qcuda::computeGpuGeometry(f, p.rows, p.cols, &geo, &why))
      continue;
    codegen::GemmShape g;
    g.bits = f.bits;
    g.groupSize = int(geo.groupSize);
    g.symmetric = f.symmetric;
    g.rows = p.rows;
    g.cols = p.cols;
    g.users = {name};
    plan.push_back(std::move(g));
  }
  plan = codegen::normalizePlan(std::move(plan));
  const std::string arch = codegen::cudaArchForTarget(isa_);
  if (!options_.generateKernels || plan.empty() || arch.empty())
    return true; // the runtime's generic CUDA kernels run
  // No nvcc at all: the artifact still runs (generic kernels), so a
  // warning; a named compiler that does not exist is an error below.
  if (codegen::findNvcc(options_.kernelBuild.nvcc).empty() && options_.kernelBuild.nvcc.empty() &&
      !llvm::sys::Process::GetEnv("QOPT_NVCC")) {
    summary.kernelNote = "no nvcc found (set QOPT_NVCC): the artifact runs the CUDA runtime's "
                         "generic kernels";
    return true;
  }
  codegen::KernelLibraryFiles files;
  std::string err;
  if (!codegen::buildCudaKernelLibrary(plan, arch, options_.kernelBuild, &files, &err))
    return fail("CUDA kernel code generation: " + err);
  return installKernels(dir, plan, files, "kernels.cu", qcuda::gen::kGenAbiVersion);
}

bool Writer::writeFiles(const std::string &dir) {
  if (!writeWeights(dir + "/weights.bin") || !writeKernels(dir))
    return false;
  summary.weightsBytes = int64_t(totalBytes_);

  bool haveTokenizer = !options_.tokenizerPath.empty() &&
                       llvm::sys::fs::is_regular_file(options_.tokenizerPath);
  bool haveGenConfig = !options_.generationConfigPath.empty() &&
                       llvm::sys::fs::is_regular_file(options_.generationConfigPath);
  if (haveTokenizer)
    if (auto ec = llvm::sys::fs::copy_file(options_.tokenizerPath, dir + "/tokenizer.json"))
      return fail(options_.tokenizerPath + ": cannot copy: " + ec.message());
  if (haveGenConfig)
    if (auto ec =
            llvm::sys::fs::copy_file(options_.generationConfigPath, dir + "/generation_config.json"))
      return fail(options_.generationConfigPath + ": cannot copy: " + ec.message());

  std::string ir;
  {
    llvm::raw_string_ostream os(ir);
    module_.print(os);
    os << "\n";
  }
  if (!writeText(dir + "/model.mlir", ir, error_))
    return false;

  // The report: the caller's (qopt's -report JSON, when it passes one),
  // else the same schema from what the module alone tells: per-weight
  // formats and sizes, totals and the memory budget; output errors need
  // calibration text, so rel_output_error is null here.
  std::string report = options_.reportJson;
  if (report.empty() && quantized_) {
    quant::ModelReport r;
    if (!quant::describeWeights(module_, store_, &r, error_))
      return false;
    // The memory budget of qopt -report at its defaults: the model's full
    // context, one sequence.
    const int64_t kvElem = kvQuantized_ ? 1 : 2;
    llvm::json::Array fused;
    for (const auto &[name, p] : plans_)
      if (!p.parts.empty()) {
        llvm::json::Array parts;
        for (const TensorPlan &part : p.parts)
          parts.push_back(part.name.empty() ? llvm::json::Value(nullptr)
                                            : llvm::json::Value(part.name));
        fused.push_back(llvm::json::Object{{"name", name}, {"parts", std::move(parts)}});
      }
    llvm::json::Object root{
        {"weights", quant::weightsJson(r)},
        {"totals", llvm::json::Object{{"parameters", r.parameters},
                                      {"quantized_bytes", r.bytes},
                                      {"quantized_parameters", r.quantizedParameters},
                                      {"quantized_bits_per_weight", r.quantizedBitsPerWeight},
                                      {"average_bits_per_weight", r.averageBitsPerWeight}}},
        {"memory_budget",
         quant::memoryBudgetJson(config_, r, config_.maxPositionEmbeddings, 1, kvElem)},
        {"artifact", llvm::json::Object{{"weights_bin_bytes", int64_t(totalBytes_)},
                                        {"fused_tensors", std::move(fused)}}}};
    report = llvm::formatv("{0:2}", llvm::json::Value(std::move(root))).str() + "\n";
  }
  if (!report.empty() && !writeText(dir + "/report.json", report, error_))
    return false;

  llvm::json::Array tensors;
  for (const auto &[name, p] : plans_) {
    llvm::json::Array shape;
    for (int64_t d : p.shape)
      shape.push_back(d);
    tensors.push_back(llvm::json::Object{{"name", name},
                                         {"dtype", p.dtype},
                                         {"shape", std::move(shape)},
                                         {"layout", p.layout},
                                         {"offset", int64_t(p.offset)},
                                         {"nbytes", int64_t(p.nbytes)}});
  }
  llvm::json::Array feats;
  for (const std::string &f : features_)
    feats.push_back(f);
  auto fileOrNull = [](bool present, const char *name) -> llvm::json::Value {
    return present ? llvm::json::Value(name) : llvm::json::Value(nullptr);
  };
  llvm::json::Object manifest{
      {"format", "qopt-artifact"},
      {"version", qrt::kArtifactVersion},
      {"producer", "qopt"},
      {"target", targetJson(std::move(feats))},
      {"config", configJson(config_)},
      {"files", llvm::json::Object{{"weights", "weights.bin"},
                                   {"tokenizer", fileOrNull(haveTokenizer, "tokenizer.json")},
                                   {"generation_config",
                                    fileOrNull(haveGenConfig, "generation_config.json")},
                                   {"ir", "model.mlir"},
                                   {"report", fileOrNull(!report.empty(), "report.json")}}},
      {"alignment", int64_t(qrt::kArtifactAlign)},
      {"weights_bytes", int64_t(totalBytes_)},
      {"tensors", std::move(tensors)},
      {"model", std::move(model_)},
      {"kernels", std::move(kernels_)},
  };
  std::string text = llvm::formatv("{0:2}", llvm::json::Value(std::move(manifest))).str() + "\n";
  return writeText(dir + "/manifest.json", text, error_);
}

bool Writer::run() {
  std::string out = options_.outputPath;
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  if (out.empty())
    return fail("-o: no artifact path");
  if (!resolveTarget() || !collect())
    return false;
  // An existing artifact (or an empty directory) is replaced; anything
  // else there is not ours to delete.
  if (llvm::sys::fs::exists(out)) {
    bool replaceable = false;
    if (llvm::sys::fs::is_directory(out)) {
      std::error_code ec;
      replaceable = llvm::sys::fs::exists(out + "/manifest.json") ||
                    llvm::sys::fs::directory_iterator(out, ec) ==
                        llvm::sys::fs::directory_iterator();
    }
    if (!replaceable)
      return fail(out + ": exists and is not a qopt artifact (refusing to replace it)");
  }
  const std::string tmp =
      out + ".tmp-" + std::to_string(llvm::sys::Process::getProcessId());
  (void)llvm::sys::fs::remove_directories(tmp);
  if (auto ec = llvm::sys::fs::create_directories(tmp))
    return fail(tmp + ": cannot create: " + ec.message());
  if (!writeFiles(tmp)) {
    (void)llvm::sys::fs::remove_directories(tmp);
    return false;
  }
  if (llvm::sys::fs::exists(out))
    (void)llvm::sys::fs::remove_directories(out);
  if (auto ec = llvm::sys::fs::rename(tmp, out)) {
    (void)llvm::sys::fs::remove_directories(tmp);
    return fail(out + ": cannot rename the finished artifact into place: " + ec.message());
  }
  return true;
}

} // namespace

bool isArtifactPath(const std::string &path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/')
    p.pop_back();
  return llvm::StringRef(p).ends_with(".qopt");
}

std::vector<std::string> artifactTargets() {
  std::vector<std::string> t = {"cpu", "x86-64-v3", "x86-64-v4"};
  for (const qrt::GpuTargetInfo &g : qrt::gpuTargets())
    t.push_back(g.name);
  return t;
}

bool writeArtifact(mlir::ModuleOp module, const WeightStore &store,
                   const ArtifactOptions &options, std::string *error,
                   ArtifactSummary *summary) {
  std::string scratch;
  Writer w(module, store, options, error ? error : &scratch);
  bool ok = w.run();
  if (ok && summary)
    *summary = w.summary;
  return ok;
}

} // namespace qopt
