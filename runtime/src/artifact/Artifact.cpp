//===- Artifact.cpp - open, map and validate a qopt artifact ---------------===//
//
// Everything read from manifest.json is checked before use: a corrupt or
// foreign artifact is refused with one line naming the file and the field,
// never a crash or a huge allocation. nlohmann::json is used without
// exceptions (parse(..., allow_exceptions = false), typed accessors only
// after is_*() checks). docs/artifact.md is the schema.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/artifact/Artifact.h"
#include "qopt-rt/artifact/GpuArtifact.h"
#include "qopt-rt/kernels/PackedLayout.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qrt {

namespace {

using json = nlohmann::json;

/// Reads fields of one JSON object, recording the first problem as
/// "<where>: <field> ...".
class Fields {
public:
  Fields(const json &obj, std::string where, std::string *error)
      : obj_(obj), where_(std::move(where)), error_(error) {
    if (!obj_.is_object())
      fail("", "is not an object");
  }
  bool ok() const { return ok_; }

  const json *get(const char *key, bool required = true) {
    if (!ok_)
      return nullptr;
    auto it = obj_.find(key);
    if (it == obj_.end() || (!required && it->is_null())) {
      if (required)
        fail(key, "is missing");
      return nullptr;
    }
    return &*it;
  }
  int64_t integer(const char *key, int64_t lo, int64_t hi) {
    const json *v = get(key);
    if (!v)
      return 0;
    if (!v->is_number_integer()) {
      fail(key, "is not an integer");
      return 0;
    }
    int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                    ? INT64_MAX
                    : v->get<int64_t>();
    if (x < lo || x > hi) {
      fail(key, "is out of range (" + std::to_string(x) + ")");
      return 0;
    }
    return x;
  }
  /// An optional integer (null or absent: `fallback`).
  int64_t optInteger(const char *key, int64_t lo, int64_t hi, int64_t fallback) {
    if (!ok_ || !get(key, false))
      return fallback;
    return integer(key, lo, hi);
  }
  double number(const char *key) {
    const json *v = get(key);
    if (!v)
      return 0;
    if (!v->is_number()) {
      fail(key, "is not a number");
      return 0;
    }
    return v->get<double>();
  }
  bool boolean(const char *key) {
    const json *v = get(key);
    if (!v)
      return false;
    if (!v->is_boolean()) {
      fail(key, "is not a boolean");
      return false;
    }
    return v->get<bool>();
  }
  std::string string(const char *key, bool required = true) {
    const json *v = get(key, required);
    if (!v)
      return "";
    if (!v->is_string()) {
      fail(key, "is not a string");
      return "";
    }
    return v->get<std::string>();
  }
  const json *array(const char *key) {
    const json *v = get(key);
    if (v && !v->is_array()) {
      fail(key, "is not an array");
      return nullptr;
    }
    return v;
  }
  void fail(const std::string &key, const std::string &what) {
    if (!ok_)
      return;
    ok_ = false;
    *error_ = where_ + (key.empty() ? "" : (where_.empty() ? "" : ".") + key) + " " + what;
  }

private:
  const json &obj_;
  std::string where_;
  std::string *error_;
  bool ok_ = true;
};

constexpr int64_t kMaxDim = int64_t(1) << 40;

bool readFile(const std::string &path, std::string *out, std::string *error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": cannot open (" + std::strerror(errno) + ")";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool fileExists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

size_t dtypeBytes(const std::string &dtype) {
  if (dtype == "f32")
    return 4;
  if (dtype == "bf16")
    return 2;
  if (dtype == "u8")
    return 1;
  return 0;
}

} // namespace

Artifact::~Artifact() {
  if (map_)
    ::munmap(map_, mapBytes_);
}

std::unique_ptr<Artifact> Artifact::open(const std::string &path, std::string *error) {
  return openImpl(path, Use::CpuExecution, error);
}

std::unique_ptr<Artifact> Artifact::openForInspection(const std::string &path,
                                                      std::string *error) {
  return openImpl(path, Use::Inspection, error);
}

std::unique_ptr<Artifact> Artifact::openForCuda(const std::string &path, std::string *error) {
  return openImpl(path, Use::CudaExecution, error);
}

const ArtifactTensor *Artifact::tensor(const std::string &name) const {
  auto it = tensorIndex_.find(name);
  return it == tensorIndex_.end() ? nullptr : &tensors_[it->second];
}

std::string Artifact::tokenizerPath() const {
  std::string p = dir_ + "/tokenizer.json";
  return fileExists(p) ? p : "";
}

std::string Artifact::generationConfigPath() const {
  std::string p = dir_ + "/generation_config.json";
  return fileExists(p) ? p : "";
}

std::unique_ptr<Artifact> Artifact::openImpl(const std::string &path, Use use,
                                             std::string *error) {
  const bool checkCpu = use == Use::CpuExecution;
  std::string scratch;
  if (!error)
    error = &scratch;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *error = path + ": no such artifact (" + std::strerror(errno) + ")";
    return nullptr;
  }
  if (!S_ISDIR(st.st_mode)) {
    *error = path + ": not a qopt artifact (expected a directory with manifest.json)";
    return nullptr;
  }
  const std::string manifestPath = path + "/manifest.json";
  std::string text;
  if (!readFile(manifestPath, &text, error))
    return nullptr;
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    *error = manifestPath + ": not valid JSON";
    return nullptr;
  }
  auto fail = [&](const std::string &what) -> std::unique_ptr<Artifact> {
    *error = manifestPath + ": " + what;
    return nullptr;
  };
  std::string ferr;
  Fields top(root, "", &ferr);
  std::string format = top.string("format");
  if (!top.ok())
    return fail(ferr);
  if (format != "qopt-artifact")
    return fail("format is '" + format + "', not 'qopt-artifact'");
  int64_t version = top.integer("version", INT64_MIN, INT64_MAX);
  if (!top.ok())
    return fail(ferr);
  if (version != kArtifactVersion)
    return fail("artifact version " + std::to_string(version) + ", this runtime reads version " +
                std::to_string(kArtifactVersion) + " (recompile the model with a matching qopt)");

  std::unique_ptr<Artifact> a(new Artifact());
  a->dir_ = path;

  // Target: every feature it names must be one we know and this CPU has.
  {
    const json *t = top.get("target");
    if (!t)
      return fail(ferr);
    Fields tf(*t, "target", &ferr);
    a->target_.isa = tf.string("isa");
    const json *feats = tf.array("features");
    if (!tf.ok())
      return fail(ferr);
    for (const json &f : *feats) {
      if (!f.is_string())
        return fail("target.features holds a non-string");
      a->target_.features.push_back(f.get<std::string>());
    }
    // GPU targets (docs/artifact.md): "device": "cuda" and the compute
    // capability, which must be the one of the named sm target.
    a->target_.device = tf.string("device", /*required=*/false);
    if (a->target_.device.empty())
      a->target_.device = "cpu";
    if (a->target_.device != "cpu" && a->target_.device != "cuda")
      return fail("target.device '" + a->target_.device + "' is unknown (cpu, cuda)");
    if (a->target_.isCuda()) {
      const GpuTargetInfo *g = findGpuTarget(a->target_.isa);
      const json *cc = tf.array("compute_capability");
      if (!tf.ok())
        return fail(ferr);
      if (!g)
        return fail("target.isa '" + a->target_.isa + "' is not a CUDA target (sm80, sm89, sm90)");
      if (cc->size() != 2 || !(*cc)[0].is_number_integer() || !(*cc)[1].is_number_integer() ||
          (*cc)[0].get<int64_t>() != g->major || (*cc)[1].get<int64_t>() != g->minor)
        return fail("target.compute_capability does not match target '" + g->name + "' (" +
                    std::to_string(g->major) + "." + std::to_string(g->minor) + ")");
      a->target_.ccMajor = g->major;
      a->target_.ccMinor = g->minor;
      if (use == Use::CpuExecution)
        return fail("artifact targets " + g->name + " (CUDA); run it with qrun --device cuda");
    } else if (use == Use::CudaExecution) {
      return fail("artifact targets the CPU ('" + a->target_.isa +
                  "'); compile it with -target=sm80|sm89|sm90 to run it on a GPU");
    }
    if (checkCpu) {
      std::vector<std::string> host = hostCpuFeatures();
      static const std::set<std::string> known = {"avx",      "avx2",     "bmi",      "bmi2",
                                                  "f16c",     "fma",      "avx512f",  "avx512bw",
                                                  "avx512cd", "avx512dq", "avx512vl", "avx512vnni"};
      for (const std::string &f : a->target_.features) {
        if (!known.count(f))
          return fail("target '" + a->target_.isa + "' requires CPU feature '" + f +
                      "', which this runtime does not know");
        if (std::find(host.begin(), host.end(), f) == host.end())
          return fail("target '" + a->target_.isa + "' requires CPU feature '" + f +
                      "', which this CPU lacks (recompile with a lower -target, e.g. "
                      "-target=x86-64-v3)");
      }
    }
  }

  // Generated kernel libraries (optional; docs/codegen.md): instruction
  // set -> file inside the artifact.
  if (auto it = root.find("kernels"); it != root.end() && !it->is_null()) {
    const json &k = *it;
    if (!k.is_object() || !k.contains("libraries") || !k["libraries"].is_object())
      return fail("kernels: expected an object with 'libraries' {isa: file}");
    for (auto lib = k["libraries"].begin(); lib != k["libraries"].end(); ++lib) {
      if (!lib.value().is_string())
        return fail("kernels.libraries." + lib.key() + ": expected a file name");
      const std::string rel = lib.value().get<std::string>();
      if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos)
        return fail("kernels.libraries." + lib.key() + ": '" + rel +
                    "' is not a path inside the artifact");
      if (!fileExists(path + "/" + rel))
        return fail("kernels.libraries." + lib.key() + ": " + rel + " is missing");
      a->kernelLibraries_[lib.key()] = path + "/" + rel;
    }
  }

  // Config.
  {
    const json *c = top.get("config");
    if (!c)
      return fail(ferr);
    Fields cf(*c, "config", &ferr);
    ArtifactConfig &k = a->config_;
    k.vocabSize = cf.integer("vocab_size", 1, kMaxDim);
    k.hiddenSize = cf.integer("hidden_size", 1, kMaxDim);
    k.intermediateSize = cf.integer("intermediate_size", 1, kMaxDim);
    k.numLayers = cf.integer("num_hidden_layers", 1, 100000);
    k.numHeads = cf.integer("num_attention_heads", 1, 100000);
    k.numKvHeads = cf.integer("num_key_value_heads", 1, 100000);
    k.headDim = cf.integer("head_dim", 1, 100000);
    k.maxPositionEmbeddings = cf.integer("max_position_embeddings", 1, kMaxDim);
    k.rmsNormEps = cf.number("rms_norm_eps");
    k.ropeTheta = cf.number("rope_theta");
    k.tieWordEmbeddings = cf.boolean("tie_word_embeddings");
    k.bosTokenId = cf.optInteger("bos_token_id", -1, kMaxDim, -1);
    k.eosTokenId = cf.optInteger("eos_token_id", -1, kMaxDim, -1);
    const json *rs = cf.get("rope_scaling");
    if (!cf.ok())
      return fail(ferr);
    Fields rf(*rs, "config.rope_scaling", &ferr);
    k.ropeType = rf.string("rope_type");
    k.ropeFactor = rf.number("factor");
    k.ropeLowFreqFactor = rf.number("low_freq_factor");
    k.ropeHighFreqFactor = rf.number("high_freq_factor");
    k.ropeOriginalMaxPositionEmbeddings =
        rf.integer("original_max_position_embeddings", 0, kMaxDim);
    if (!rf.ok())
      return fail(ferr);
    if (k.numHeads % k.numKvHeads != 0)
      return fail("config.num_attention_heads (" + std::to_string(k.numHeads) +
                  ") is not a multiple of num_key_value_heads (" +
                  std::to_string(k.numKvHeads) + ")");
  }

  // Map weights.bin.
  const std::string weightsPath = path + "/weights.bin";
  {
    int fd = ::open(weightsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *error = weightsPath + ": cannot open (" + std::strerror(errno) + ")";
      return nullptr;
    }
    struct stat ws;
    if (::fstat(fd, &ws) != 0 || ws.st_size <= 0) {
      ::close(fd);
      *error = weightsPath + ": empty or unreadable";
      return nullptr;
    }
    void *m = ::mmap(nullptr, size_t(ws.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) {
      *error = weightsPath + ": mmap failed (" + std::strerror(errno) + ")";
      return nullptr;
    }
    a->map_ = m;
    a->mapBytes_ = size_t(ws.st_size);
  }
  int64_t declared = top.integer("weights_bytes", 0, INT64_MAX);
  if (!top.ok())
    return fail(ferr);
  if (uint64_t(declared) != a->mapBytes_) {
    *error = weightsPath + ": " + std::to_string(a->mapBytes_) + " bytes, the manifest says " +
             std::to_string(declared) + " (truncated or from another artifact)";
    return nullptr;
  }

  // Tensor table.
  {
    const json *arr = top.array("tensors");
    if (!arr)
      return fail(ferr);
    const uint8_t *base = static_cast<const uint8_t *>(a->map_);
    for (size_t i = 0; i < arr->size(); ++i) {
      Fields tf((*arr)[i], "tensors[" + std::to_string(i) + "]", &ferr);
      ArtifactTensor t;
      t.name = tf.string("name");
      t.dtype = tf.string("dtype");
      t.layout = tf.string("layout");
      int64_t offset = tf.integer("offset", 0, INT64_MAX);
      int64_t nbytes = tf.integer("nbytes", 1, INT64_MAX);
      const json *shape = tf.array("shape");
      if (!tf.ok())
        return fail(ferr);
      const std::string where = "tensor '" + t.name + "'";
      size_t elem = dtypeBytes(t.dtype);
      if (!elem)
        return fail(where + ": unknown dtype '" + t.dtype + "'");
      if (shape->empty() || shape->size() > 4)
        return fail(where + ": shape must have 1 to 4 dimensions");
      int64_t count = 1;
      for (const json &d : *shape) {
        if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > kMaxDim)
          return fail(where + ": bad dimension in shape");
        t.shape.push_back(d.get<int64_t>());
        if (count > kMaxDim / t.shape.back())
          return fail(where + ": shape too large");
        count *= t.shape.back();
      }
      if (uint64_t(count) * elem != uint64_t(nbytes))
        return fail(where + ": " + std::to_string(nbytes) + " bytes do not match its shape and " +
                    t.dtype);
      if (offset % int64_t(kArtifactAlign) != 0)
        return fail(where + ": offset " + std::to_string(offset) + " is not " +
                    std::to_string(kArtifactAlign) + "-byte aligned");
      if (uint64_t(offset) > a->mapBytes_ || uint64_t(nbytes) > a->mapBytes_ - uint64_t(offset))
        return fail(where + ": bytes [" + std::to_string(offset) + ", +" +
                    std::to_string(nbytes) + ") lie outside weights.bin (" +
                    std::to_string(a->mapBytes_) + " bytes)");
      if (a->tensorIndex_.count(t.name))
        return fail(where + ": listed twice");
      t.data = base + offset;
      t.nbytes = size_t(nbytes);
      a->tensorIndex_[t.name] = a->tensors_.size();
      a->tensors_.push_back(std::move(t));
    }
    // Sorted by name (the index must follow the move).
    std::sort(a->tensors_.begin(), a->tensors_.end(),
              [](const ArtifactTensor &x, const ArtifactTensor &y) { return x.name < y.name; });
    a->tensorIndex_.clear();
    for (size_t i = 0; i < a->tensors_.size(); ++i)
      a->tensorIndex_[a->tensors_[i].name] = i;
  }

  // The model's structure.
  const json *model = top.get("model");
  if (!model)
    return fail(ferr);
  Fields mf(*model, "model", &ferr);
  auto findTensor = [&](Fields &f, const char *key, const std::string &dtypeWanted,
                        bool required = true) -> const ArtifactTensor * {
    std::string name = f.string(key, required);
    if (!f.ok() || name.empty())
      return nullptr;
    const ArtifactTensor *t = a->tensor(name);
    if (!t) {
      f.fail(key, "names tensor '" + name + "', which is not in the tensor table");
      return nullptr;
    }
    if (!dtypeWanted.empty() && dtypeWanted != "float" && t->dtype != dtypeWanted) {
      f.fail(key, "tensor '" + name + "' has dtype " + t->dtype + ", expected " + dtypeWanted);
      return nullptr;
    }
    if (dtypeWanted == "float" && t->dtype != "f32" && t->dtype != "bf16") {
      f.fail(key, "tensor '" + name + "' has dtype " + t->dtype + ", expected f32 or bf16");
      return nullptr;
    }
    return t;
  };
  auto vectorOk = [&](const ArtifactTensor *t, int64_t n) {
    return t && t->shape.size() == 1 && t->shape[0] == n;
  };
  const ArtifactConfig &cfg = a->config_;

  // A quantized linear of a GPU artifact: a GPU layout id agreeing with
  // the linear's fields and a blob of exactly the size that layout needs.
  auto readGpuPacked = [&](const ArtifactLinear &l, const ArtifactTensor &w,
                           Fields *lf) -> bool {
    qcuda::GpuQuantFormat gf;
    std::string perr;
    const bool fp8 = l.layout == gpuW8A8Fp8LayoutId();
    if (fp8 || l.layout == gpuW8A8LayoutId()) { // W8A8: 8-bit codes + fp32 scales
      const char *format = fp8 ? "fp8_e4m3" : "int8";
      GpuW8A8BlobLayout wl;
      if (l.format != format || l.bits != 8 || l.groupSize != 0 || !l.symmetric ||
          w.layout != l.layout || w.dtype != "u8") {
        lf->fail("layout", "'" + l.layout + "' needs an " + format +
                               " per-channel symmetric linear and a u8 tensor '" + w.name +
                               "' of that layout");
        return false;
      }
      const GpuTargetInfo *t = findGpuTarget(a->target_.isa);
      if (fp8 && t && !gpuTargetHasFp8(*t)) {
        lf->fail("layout", "'" + l.layout + "' needs FP8 tensor cores (sm89 or newer), the "
                               "artifact targets " + a->target_.isa);
        return false;
      }
      if (!gpuW8A8BlobLayout(l.outFeatures, l.inFeatures, &wl, &perr)) {
        lf->fail("", perr);
        return false;
      }
      if (uint64_t(wl.totalBytes) != w.nbytes) {
        lf->fail("weight", "tensor '" + w.name + "' holds " + std::to_string(w.nbytes) +
                               " bytes, layout " + l.layout + " needs " +
                               std::to_string(wl.totalBytes));
        return false;
      }
      return true;
    }
    if (!parseGpuLayoutId(l.layout, &gf, &perr)) {
      lf->fail("layout", perr + " (the artifact targets " + a->target_.isa + ")");
      return false;
    }
    if (gf.bits != l.bits || (l.format == "int4") != (gf.bits == 4) ||
        gf.groupSize != l.groupSize || gf.symmetric != l.symmetric || w.layout != l.layout ||
        w.dtype != "u8") {
      lf->fail("layout", "'" + l.layout + "' disagrees with the linear's format or with " +
                             "tensor '" + w.name + "'");
      return false;
    }
    GpuBlobLayout bl;
    if (!gpuBlobLayout(gf, l.outFeatures, l.inFeatures, &bl, &perr)) {
      lf->fail("", perr);
      return false;
    }
    if (uint64_t(bl.totalBytes) != w.nbytes) {
      lf->fail("weight", "tensor '" + w.name + "' holds " + std::to_string(w.nbytes) +
                             " bytes, layout " + l.layout + " needs " +
                             std::to_string(bl.totalBytes));
      return false;
    }
    return true;
  };

  auto readLinear = [&](const json &obj, const std::string &where, int64_t outF, int64_t inF,
                        ArtifactLinear *l) -> bool {
    Fields lf(obj, where, &ferr);
    l->name = lf.string("weight");
    l->outFeatures = lf.integer("out_features", 1, kMaxDim);
    l->inFeatures = lf.integer("in_features", 1, kMaxDim);
    l->format = lf.string("format");
    l->layout = lf.string("layout");
    l->bits = int(lf.integer("bits", 0, 32));
    l->groupSize = lf.integer("group_size", 0, kMaxDim);
    l->symmetric = lf.boolean("symmetric");
    if (!lf.ok())
      return false;
    if (l->outFeatures != outF || l->inFeatures != inF) {
      lf.fail("", "is " + std::to_string(l->outFeatures) + "x" + std::to_string(l->inFeatures) +
                      ", the config implies " + std::to_string(outF) + "x" + std::to_string(inF));
      return false;
    }
    l->packed = findTensor(lf, "weight", "");
    if (!lf.ok())
      return false;
    const ArtifactTensor *w = l->packed;
    if (l->format == "f32" || l->format == "bf16") {
      if (w->dtype != l->format || w->shape.size() != 2 || w->shape[0] != outF ||
          w->shape[1] != inF || l->layout != "row_major") {
        lf.fail("weight", "tensor '" + w->name + "' is not a row-major " + l->format + " [" +
                              std::to_string(outF) + ", " + std::to_string(inF) + "] matrix");
        return false;
      }
    } else if ((l->format == "int4" || l->format == "int8" || l->format == "fp8_e4m3") &&
               a->target_.isCuda()) {
      if (!readGpuPacked(*l, *w, &lf))
        return false;
    } else if (l->format == "int4" || l->format == "int8") {
      kernels::PackedFormat pf;
      std::string perr;
      if (!kernels::parseLayoutId(l->layout, &pf, &perr)) {
        lf.fail("layout", perr);
        return false;
      }
      if (pf.bits != l->bits || (l->format == "int4") != (pf.bits == 4) ||
          pf.groupSize != l->groupSize || pf.symmetric != l->symmetric ||
          w->layout != l->layout || w->dtype != "u8") {
        lf.fail("layout", "'" + l->layout + "' disagrees with the linear's format or with " +
                              "tensor '" + w->name + "'");
        return false;
      }
      kernels::PackedGeometry g;
      if (!kernels::computeGeometry(pf, outF, inF, &g, &perr)) {
        lf.fail("", perr);
        return false;
      }
      if (uint64_t(g.totalBytes) != w->nbytes) {
        lf.fail("weight", "tensor '" + w->name + "' holds " + std::to_string(w->nbytes) +
                              " bytes, layout " + l->layout + " needs " +
                              std::to_string(g.totalBytes));
        return false;
      }
    } else {
      lf.fail("format", "'" + l->format + "' is not one this runtime runs (f32, bf16, int4, int8)");
      return false;
    }
    l->bias = findTensor(lf, "bias", "float", /*required=*/false);
    if (!lf.ok())
      return false;
    if (l->bias && !vectorOk(l->bias, outF)) {
      lf.fail("bias", "is not a vector of " + std::to_string(outF));
      return false;
    }
    if (const json *aq = lf.get("act_quant", false)) {
      Fields af(*aq, where + ".act_quant", &ferr);
      l->activationQuant = af.string("type");
      l->activationQuantMode = af.string("mode");
      l->activationScale = float(af.number("scale"));
      if (!af.ok())
        return false;
      if ((l->activationQuant != "int8" && l->activationQuant != "fp8_e4m3") ||
          (l->activationQuantMode != "per_token" && l->activationQuantMode != "per_tensor")) {
        af.fail("", "has an unknown type or mode");
        return false;
      }
    }
    // GPU W8A8 layouts: cuBLASLt multiplies codes of one type, so the
    // activations are quantized to the weights' type.
    const bool gpuW8A8 = l->layout == gpuW8A8LayoutId() || l->layout == gpuW8A8Fp8LayoutId();
    if (a->target_.isCuda() && gpuW8A8) {
      const std::string want = l->layout == gpuW8A8Fp8LayoutId() ? "fp8_e4m3" : "int8";
      if (l->activationQuant != want) {
        lf.fail("act_quant", "is " +
                                 (l->activationQuant.empty() ? std::string("null")
                                                             : "'" + l->activationQuant + "'") +
                                 ", layout " + l->layout + " needs type " + want);
        return false;
      }
    }
    return lf.ok();
  };

  const int64_t H = cfg.hiddenSize, I = cfg.intermediateSize, D = cfg.headDim;
  a->embedding_ = findTensor(mf, "embedding", "float");
  a->finalNorm_ = findTensor(mf, "final_norm", "float");
  const json *lm = mf.get("lm_head");
  const json *layers = mf.array("layers");
  if (!mf.ok())
    return fail(ferr);
  if (a->embedding_->shape != std::vector<int64_t>{cfg.vocabSize, H})
    return fail("model.embedding: tensor '" + a->embedding_->name + "' is not [vocab, hidden]");
  if (!vectorOk(a->finalNorm_, H))
    return fail("model.final_norm: tensor '" + a->finalNorm_->name + "' is not [hidden]");
  if (!readLinear(*lm, "model.lm_head", cfg.vocabSize, H, &a->lmHead_))
    return fail(ferr);
  if (int64_t(layers->size()) != cfg.numLayers)
    return fail("model.layers has " + std::to_string(layers->size()) + " entries, config says " +
                std::to_string(cfg.numLayers));
  const int64_t qOut = cfg.numHeads * D, kvOut = cfg.numKvHeads * D;
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::string where = "model.layers[" + std::to_string(i) + "]";
    Fields lf((*layers)[i], where, &ferr);
    ArtifactLayer L;
    L.inputNorm = findTensor(lf, "input_norm", "float");
    L.postAttentionNorm = findTensor(lf, "post_attention_norm", "float");
    if (!lf.ok())
      return fail(ferr);
    if (!vectorOk(L.inputNorm, H) || !vectorOk(L.postAttentionNorm, H))
      return fail(where + ": a norm weight is not [hidden]");
    // Fused projections (version 2): "qkv" replaces q/k/v and "gate_up"
    // replaces gate/up when the compiler could fuse them.
    auto readFused = [&](const char *key, std::vector<const char *> apart,
                         const std::vector<int64_t> &parts, int64_t in,
                         ArtifactLinear *dst) -> bool {
      const json *obj = lf.get(key, false);
      for (const char *k : apart)
        if (obj && lf.get(k, false)) {
          ferr = where + " has both '" + key + "' and '" + k + "'";
          return false;
        }
      if (!obj)
        return true;
      int64_t total = 0;
      for (int64_t p : parts)
        total += p;
      if (!readLinear(*obj, where + "." + key, total, in, dst))
        return false;
      Fields ff(*obj, where + "." + key, &ferr);
      const json *pj = ff.array("parts");
      if (!pj)
        return false;
      std::string got;
      for (const json &x : *pj) {
        got += (got.empty() ? "" : ", ") + (x.is_number_integer() ? std::to_string(x.get<int64_t>()) : std::string("?"));
        if (x.is_number_integer() && dst->parts.size() < parts.size() + 1)
          dst->parts.push_back(x.get<int64_t>());
      }
      if (dst->parts != parts) {
        std::string want;
        for (int64_t p : parts)
          want += (want.empty() ? "" : ", ") + std::to_string(p);
        ff.fail("parts", "is [" + got + "], expected [" + want + "] (summing to out_features " +
                             std::to_string(total) + ")");
        dst->parts.clear();
        return false;
      }
      return true;
    };
    if (!readFused("qkv", {"q", "k", "v"}, {qOut, kvOut, kvOut}, H, &L.qkv) ||
        !readFused("gate_up", {"gate", "up"}, {I, I}, H, &L.gateUp))
      return fail(ferr);
    struct {
      const char *key;
      ArtifactLinear *dst;
      int64_t out, in;
      bool skip;
    } linears[] = {{"q", &L.q, qOut, H, L.fusedQkv()},      {"k", &L.k, kvOut, H, L.fusedQkv()},
                   {"v", &L.v, kvOut, H, L.fusedQkv()},     {"o", &L.o, H, qOut, false},
                   {"gate", &L.gate, I, H, L.fusedGateUp()}, {"up", &L.up, I, H, L.fusedGateUp()},
                   {"down", &L.down, H, I, false}};
    for (auto &e : linears) {
      if (e.skip)
        continue;
      const json *obj = lf.get(e.key);
      if (!obj || !readLinear(*obj, where + "." + e.key, e.out, e.in, e.dst))
        return fail(ferr);
    }
    if (const json *kv = lf.get("kv_cache", false)) {
      Fields kf(*kv, where + ".kv_cache", &ferr);
      L.kvCacheDtype = kf.string("dtype", /*required=*/false);
      for (auto [key, dst] : {std::pair<const char *, std::vector<float> *>{"k_scales", &L.kScales},
                              {"v_scales", &L.vScales}}) {
        const json *s = kf.get(key, false);
        if (!s)
          continue;
        if (!s->is_array() || int64_t(s->size()) != cfg.numKvHeads)
          return fail(where + ".kv_cache." + key + " is not " +
                      std::to_string(cfg.numKvHeads) + " numbers");
        for (const json &x : *s) {
          if (!x.is_number() || !(x.get<double>() > 0))
            return fail(where + ".kv_cache." + key + " holds a non-positive scale");
          dst->push_back(float(x.get<double>()));
        }
      }
      if (!kf.ok())
        return fail(ferr);
      if (!L.kvCacheDtype.empty() && L.kvCacheDtype != "bf16" && L.kvCacheDtype != "f16" &&
          L.kvCacheDtype != "int8" && L.kvCacheDtype != "fp8_e4m3")
        return fail(where + ".kv_cache.dtype '" + L.kvCacheDtype + "' is unknown");
      if ((L.kvCacheDtype == "int8" || L.kvCacheDtype == "fp8_e4m3") &&
          (L.kScales.empty() || L.vScales.empty()))
        return fail(where + ".kv_cache: " + L.kvCacheDtype + " needs k_scales and v_scales");
    }
    a->layers_.push_back(std::move(L));
  }
  return a;
}

bool packedView(const ArtifactLinear &l, kernels::PackedView *view, std::string *error) {
  if (!l.packed || (l.format != "int4" && l.format != "int8")) {
    *error = "linear '" + l.name + "' is " + l.format + ", not a packed int4/int8 weight";
    return false;
  }
  if (!kernels::parseLayoutId(l.layout, &view->format, error) ||
      !kernels::computeGeometry(view->format, l.outFeatures, l.inFeatures, &view->geometry,
                                error))
    return false;
  view->data = l.packed->data;
  return true;
}

} // namespace qrt
