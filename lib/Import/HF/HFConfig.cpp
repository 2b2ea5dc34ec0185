//===- HFConfig.cpp - config.json -> ModelConfig ----------------------===//
//
// Reads the Llama-family hyper-parameters the way transformers does, with
// transformers' class defaults for the optional fields and both spellings
// of rope settings: transformers 5's `rope_parameters` and 4.x's top-level
// `rope_theta` with a legacy `rope_scaling` dict.
//
// Deliberately accepted without effect: Mistral's `sliding_window` and
// Qwen2's `use_sliding_window`/`max_window_layers` (the executor attends to
// the full causal prefix, which equals the sliding window for sequences no
// longer than the window), `torch_dtype`/`dtype` (the tensors carry their
// own), and dropout, cache and initializer fields. Anything that changes
// the computation and is not supported -- another activation, MLP biases,
// Llama's o_proj bias, rope types other than default/linear/llama3, a
// quantization_config -- is an error naming the field.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/HFImporter.h"

#include "BoundedJSON.h"

#include <cmath>

namespace qopt {

namespace {

/// A supported model family and transformers' defaults for it.
struct Family {
  const char *architecture;
  const char *modelType;
  int64_t maxPositionEmbeddings;
};
constexpr Family kFamilies[] = {
    {"LlamaForCausalLM", "llama", 2048},
    {"MistralForCausalLM", "mistral", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", 32768},
};

/// Largest size a dimension field may have: far above any real model, and
/// small enough that products of two or three never overflow int64.
constexpr int64_t kMaxDim = int64_t(1) << 24;

class ConfigReader {
public:
  ConfigReader(const llvm::json::Object &o, const std::string &source, std::string *error)
      : o_(o), source_(source), error_(error) {}

  bool fail(const std::string &msg) {
    if (ok_)
      *error_ = source_ + ": " + msg;
    ok_ = false;
    return false;
  }
  bool ok() const { return ok_; }

  /// True when `key` is absent or null.
  bool absent(llvm::StringRef key) const {
    const llvm::json::Value *v = o_.get(key);
    return !v || v->getAsNull();
  }

  int64_t integer(llvm::StringRef key, std::optional<int64_t> dflt, int64_t lo, int64_t hi) {
    if (absent(key)) {
      if (!dflt) {
        fail("missing '" + key.str() + "'");
        return 0;
      }
      return *dflt;
    }
    std::optional<int64_t> v = o_.get(key)->getAsInteger();
    if (!v) {
      fail("'" + key.str() + "' must be an integer");
      return 0;
    }
    if (*v < lo || *v > hi) {
      fail("'" + key.str() + "' = " + std::to_string(*v) + " is out of range [" +
           std::to_string(lo) + ", " + std::to_string(hi) + "]");
      return 0;
    }
    return *v;
  }

  double number(const llvm::json::Object &o, llvm::StringRef key, double dflt,
                const std::string &where = "") {
    const llvm::json::Value *v = o.get(key);
    if (!v || v->getAsNull())
      return dflt;
    std::optional<double> d = v->getAsNumber();
    if (!d) {
      fail("'" + where + key.str() + "' must be a number");
      return dflt;
    }
    return *d;
  }

  bool boolean(llvm::StringRef key, bool dflt) {
    if (absent(key))
      return dflt;
    std::optional<bool> b = o_.get(key)->getAsBoolean();
    if (!b) {
      fail("'" + key.str() + "' must be true or false");
      return dflt;
    }
    return *b;
  }

  /// bos/eos: an integer, a list of integers (the first is used), or null.
  std::optional<int64_t> tokenId(llvm::StringRef key) {
    if (absent(key))
      return std::nullopt;
    const llvm::json::Value *v = o_.get(key);
    if (const llvm::json::Array *a = v->getAsArray()) {
      if (a->empty())
        return std::nullopt;
      v = &(*a)[0];
    }
    std::optional<int64_t> id = v->getAsInteger();
    if (!id || *id < 0 || *id >= kMaxDim) {
      fail("'" + key.str() + "' must be a token id or a list of token ids");
      return std::nullopt;
    }
    return id;
  }

  /// A rope scaling dict: `rope_parameters` (transformers 5) or the legacy
  /// `rope_scaling`. `key` names it in errors.
  void ropeScaling(const llvm::json::Object &r, const std::string &key, RopeScaling *s) {
    std::optional<llvm::StringRef> type = r.getString("rope_type");
    if (!type)
      type = r.getString("type");
    if (!type) {
      if (r.get("rope_type") || r.get("type"))
        fail("'" + key + ".rope_type' must be a string");
      else if (r.get("factor"))
        fail("'" + key + "' has a 'factor' but no 'rope_type'");
      s->type = "default";
      return;
    }
    s->type = type->str();
    if (s->type == "default")
      return;
    if (s->type != "linear" && s->type != "llama3") {
      fail("unsupported rope_type '" + s->type + "' in '" + key +
           "' (supported: default, linear, llama3)");
      return;
    }
    auto required = [&](llvm::StringRef field) {
      if (!r.get(field) || r.get(field)->getAsNull())
        fail("'" + key + "' of type '" + s->type + "' lacks '" + field.str() + "'");
    };
    required("factor");
    s->factor = number(r, "factor", 1.0, key + ".");
    if (s->type == "llama3") {
      required("low_freq_factor");
      required("high_freq_factor");
      required("original_max_position_embeddings");
      s->lowFreqFactor = number(r, "low_freq_factor", s->lowFreqFactor, key + ".");
      s->highFreqFactor = number(r, "high_freq_factor", s->highFreqFactor, key + ".");
      double orig = number(r, "original_max_position_embeddings", 8192, key + ".");
      if (!(orig >= 1 && orig <= double(kMaxDim)) || orig != double(int64_t(orig)))
        fail("'" + key + ".original_max_position_embeddings' must be a positive integer");
      else
        s->originalMaxPositionEmbeddings = int64_t(orig);
      if (!(s->highFreqFactor > s->lowFreqFactor))
        fail("'" + key + "': high_freq_factor must exceed low_freq_factor");
    }
    if (!(s->factor > 0) || !std::isfinite(s->factor))
      fail("'" + key + ".factor' must be a positive number");
  }

private:
  const llvm::json::Object &o_;
  const std::string &source_;
  std::string *error_;
  bool ok_ = true;
};

bool readConfig(const llvm::json::Value &root, const std::string &source, ModelConfig *c,
                std::string *error) {
  const llvm::json::Object *o = root.getAsObject();
  if (!o) {
    *error = source + ": not a JSON object";
    return false;
  }
  ConfigReader r(*o, source, error);

  // Family: from `architectures` when present, else from `model_type`.
  const Family *family = nullptr;
  std::string supportedArchs, supportedTypes;
  for (const Family &f : kFamilies) {
    supportedArchs += (supportedArchs.empty() ? "" : ", ") + std::string(f.architecture);
    supportedTypes += (supportedTypes.empty() ? "" : ", ") + std::string(f.modelType);
  }
  const llvm::json::Value *archs = o->get("architectures");
  if (archs && !archs->getAsNull()) {
    const llvm::json::Array *a = archs->getAsArray();
    if (!a || a->empty() || !(*a)[0].getAsString())
      return r.fail("'architectures' must be a non-empty list of strings");
    llvm::StringRef arch = *(*a)[0].getAsString();
    for (const Family &f : kFamilies)
      if (arch == f.architecture)
        family = &f;
    if (!family)
      return r.fail("unsupported architecture '" + arch.str() + "' (supported: " +
                    supportedArchs + ")");
  } else if (std::optional<llvm::StringRef> type = o->getString("model_type")) {
    for (const Family &f : kFamilies)
      if (*type == f.modelType)
        family = &f;
    if (!family)
      return r.fail("unsupported model_type '" + type->str() + "' (supported: " +
                    supportedTypes + ")");
  } else {
    return r.fail("names neither 'architectures' nor 'model_type'");
  }
  const std::string modelType = family->modelType;
  c->architecture = family->architecture;

  if (const llvm::json::Value *q = o->get("quantization_config"); q && !q->getAsNull()) {
    std::string method = "unknown";
    if (const llvm::json::Object *qo = q->getAsObject())
      if (auto m = qo->getString("quant_method"))
        method = m->str();
    return r.fail("quantized checkpoints are not supported (quantization_config: " + method +
                  "); import the float model");
  }
  if (!r.absent("hidden_act")) {
    std::optional<llvm::StringRef> act = o->getString("hidden_act");
    if (!act || (*act != "silu" && *act != "swish"))
      return r.fail("hidden_act must be 'silu' (the SwiGLU MLP); other activations are not "
                    "supported");
  }

  c->vocabSize = r.integer("vocab_size", std::nullopt, 1, kMaxDim);
  c->hiddenSize = r.integer("hidden_size", std::nullopt, 1, kMaxDim);
  c->intermediateSize = r.integer("intermediate_size", std::nullopt, 1, kMaxDim);
  c->numLayers = r.integer("num_hidden_layers", std::nullopt, 1, 10000);
  c->numHeads = r.integer("num_attention_heads", std::nullopt, 1, 1 << 16);
  if (!r.ok())
    return false;
  c->numKvHeads = r.integer("num_key_value_heads", c->numHeads, 1, 1 << 16);
  if (r.absent("head_dim")) {
    if (c->hiddenSize % c->numHeads)
      return r.fail("hidden_size (" + std::to_string(c->hiddenSize) +
                    ") is not a multiple of num_attention_heads (" +
                    std::to_string(c->numHeads) + ") and head_dim is not given");
    c->headDim = c->hiddenSize / c->numHeads;
  } else {
    c->headDim = r.integer("head_dim", std::nullopt, 1, kMaxDim);
  }
  c->maxPositionEmbeddings =
      r.integer("max_position_embeddings", family->maxPositionEmbeddings, 1, int64_t(1) << 40);
  c->rmsNormEps = r.number(*o, "rms_norm_eps", 1e-6);

  // Rope: rope_parameters (v5) wins over top-level rope_theta/rope_scaling (v4).
  c->ropeTheta = r.number(*o, "rope_theta", 10000.0);
  c->ropeScaling = RopeScaling();
  const llvm::json::Value *rp = o->get("rope_parameters");
  const llvm::json::Value *rs = o->get("rope_scaling");
  if (rp && !rp->getAsNull()) {
    const llvm::json::Object *p = rp->getAsObject();
    if (!p)
      return r.fail("'rope_parameters' must be an object");
    if (!p->get("rope_theta") && !p->get("rope_type") && !p->empty() &&
        p->begin()->second.getAsObject())
      return r.fail("per-layer-type 'rope_parameters' are not supported");
    c->ropeTheta = r.number(*p, "rope_theta", c->ropeTheta, "rope_parameters.");
    r.ropeScaling(*p, "rope_parameters", &c->ropeScaling);
  } else if (rs && !rs->getAsNull()) {
    const llvm::json::Object *p = rs->getAsObject();
    if (!p)
      return r.fail("'rope_scaling' must be an object or null");
    r.ropeScaling(*p, "rope_scaling", &c->ropeScaling);
  }
  if (!r.ok())
    return false;
  if (!(c->ropeTheta > 0) || !std::isfinite(c->ropeTheta))
    return r.fail("rope_theta must be a positive number");
  if (!(c->rmsNormEps > 0) || !std::isfinite(c->rmsNormEps))
    return r.fail("rms_norm_eps must be a positive number");

  c->tieWordEmbeddings = r.boolean("tie_word_embeddings", false);
  if (r.boolean("mlp_bias", false))
    return r.fail("mlp_bias: true is not supported (the MLP projections have no biases)");
  // Qwen2 always has q/k/v biases (and none on o_proj). Llama's
  // attention_bias puts one on o_proj too, which the IR cannot express.
  // Mistral's attention never has biases, whatever the config says.
  bool attnBias = r.boolean("attention_bias", false);
  if (modelType == "qwen2")
    c->attentionBias = true;
  else if (modelType == "llama" && attnBias)
    return r.fail("attention_bias: true is not supported for llama (its o_proj bias)");
  else
    c->attentionBias = false;
  c->bosTokenId = r.tokenId("bos_token_id");
  c->eosTokenId = r.tokenId("eos_token_id");
  if (!r.ok())
    return false;
  if (std::string why = c->validate(); !why.empty())
    return r.fail(why);
  return true;
}

} // namespace

bool parseHFConfigJSON(const std::string &text, const std::string &source, ModelConfig *config,
                       std::string *error) {
  std::optional<llvm::json::Value> v = parseBoundedJSON(text, source, error);
  if (!v)
    return false;
  ModelConfig c;
  if (!readConfig(*v, source, &c, error))
    return false;
  *config = c;
  return true;
}

bool parseHFConfig(const std::string &configPath, ModelConfig *config, std::string *error) {
  // Real config.json files are a few KB; 4 MB leaves room for any label map.
  std::optional<llvm::json::Value> v = readBoundedJSONFile(configPath, 4u << 20, error);
  if (!v)
    return false;
  ModelConfig c;
  if (!readConfig(*v, configPath, &c, error))
    return false;
  *config = c;
  return true;
}

} // namespace qopt
