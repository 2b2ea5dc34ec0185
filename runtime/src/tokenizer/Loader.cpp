//===- Loader.cpp - tokenizer.json -> TokenizerImpl ----------------------===//
#include "TokenizerImpl.h"

#include <initializer_list>

namespace qrt::tok {

namespace {

// Real files nest a few levels deep; a hostile one could nest millions deep
// and overflow the recursive component builders, so depth is checked on the
// raw text before parsing.
constexpr int kMaxJsonDepth = 256;
// Padding allocates this many ids per encode; beyond any real context size
// it can only be an attempt to make every encode allocate gigabytes.
constexpr int64_t kMaxPadLength = int64_t(1) << 22;

void checkNestingDepth(const std::string &text) {
  int depth = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw LoadError("JSON nests deeper than " +
                        std::to_string(kMaxJsonDepth) + " levels");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

bool isDirectionLeft(const Json &j, const std::string &where) {
  std::string d = getStringOr(j, "direction", where, "Right");
  if (d == "Left")
    return true;
  if (d == "Right")
    return false;
  throw LoadError(where + ".direction must be \"Left\" or \"Right\"");
}

void loadTruncation(const Json &j, Truncation &t) {
  if (j.is_null())
    return;
  const std::string where = "truncation";
  t.enabled = true;
  t.maxLength = size_t(getInt(j, "max_length", where, 0, INT32_MAX));
  t.keepEnd = isDirectionLeft(j, where);
}

void loadPadding(const Json &j, Padding &p) {
  if (j.is_null())
    return;
  const std::string where = "padding";
  p.enabled = true;
  const Json *strategy = field(j, "strategy", where);
  if (strategy && strategy->is_object()) {
    const Json *fixed = field(*strategy, "Fixed", where + ".strategy");
    if (!fixed)
      throw LoadError(where + ".strategy must be \"BatchLongest\" or "
                              "{\"Fixed\": n}");
    p.fixedLength = size_t(asInt(*fixed, where + ".strategy.Fixed", 0,
                                 kMaxPadLength));
  } else if (strategy && !(strategy->is_string() &&
                           strategy->get<std::string>() == "BatchLongest")) {
    throw LoadError(where + ".strategy must be \"BatchLongest\" or "
                            "{\"Fixed\": n}");
  }
  p.multipleOf = size_t(getIntOr(j, "pad_to_multiple_of", where, 0,
                                 kMaxPadLength, 0));
  p.padFront = isDirectionLeft(j, where);
  p.padId = int32_t(getIntOr(j, "pad_id", where, 0, kMaxTokenId, 0));
}

std::unique_ptr<BpeModel> loadModel(const Json &root) {
  const Json *m = field(root, "model", "tokenizer");
  if (!m || !m->is_object())
    throw LoadError("model is missing or not an object");
  std::string type = getStringOr(*m, "type", "model", "");
  // Old files may omit the tag; BPE is the model that has merges.
  if (type.empty() && m->contains("merges"))
    type = "BPE";
  if (type != "BPE")
    throw LoadError("model: unsupported model type '" + type +
                    "' (supported: BPE)");
  return BpeModel::fromJson(*m, "model (BPE)");
}

const Json &member(const Json &root, const char *key) {
  static const Json null;
  const Json *v = field(root, key, "tokenizer");
  return v ? *v : null;
}

std::optional<int32_t> findByName(const TokenizerImpl &t,
                                  std::initializer_list<const char *> names) {
  for (const char *n : names) {
    if (auto id = t.added.tokenToId(n))
      return id;
    if (auto id = t.model->tokenToId(n))
      return id;
  }
  return std::nullopt;
}

} // namespace

std::unique_ptr<TokenizerImpl> loadTokenizer(const std::string &jsonText) {
  checkNestingDepth(jsonText);
  Json root = Json::parse(jsonText);
  if (!root.is_object())
    throw LoadError(std::string("top level must be an object, found ") +
                    jsonTypeName(root));
  std::string version = getStringOr(root, "version", "tokenizer", "1.0");
  if (version != "1.0")
    throw LoadError("unknown tokenizer.json version '" + version + "'");

  auto t = std::make_unique<TokenizerImpl>();
  t->model = loadModel(root);
  t->normalizer = makeNormalizer(member(root, "normalizer"), "normalizer");
  t->preTokenizer =
      makePreTokenizer(member(root, "pre_tokenizer"), "pre_tokenizer");
  t->postProcessor =
      makePostProcessor(member(root, "post_processor"), "post_processor");
  t->decoder = makeDecoder(member(root, "decoder"), "decoder");
  t->added.load(member(root, "added_tokens"), "added_tokens", *t->model);
  t->added.buildMatchers(t->normalizer.get());
  loadTruncation(member(root, "truncation"), t->truncation);
  loadPadding(member(root, "padding"), t->padding);

  std::vector<int32_t> before, after;
  if (t->postProcessor)
    t->postProcessor->surroundingIds(before, after);
  t->bos = !before.empty() ? std::optional<int32_t>(before.front())
                           : findByName(*t, {"<s>", "<|begin_of_text|>",
                                             "<bos>", "<|startoftext|>"});
  t->eos = !after.empty()
               ? std::optional<int32_t>(after.back())
               : findByName(*t, {"</s>", "<|end_of_text|>", "<|endoftext|>",
                                 "<eos>", "<|eot_id|>", "<|im_end|>"});
  return t;
}

} // namespace qrt::tok
