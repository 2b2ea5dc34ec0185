//===- PostProcessors.cpp - tokenizer.json "post_processor" --------------===//
#include "PostProcessors.h"

namespace qrt::tok {

namespace {

/// Any single-sequence layout: fixed ids, the sequence, fixed ids.
class WrapProcessor : public PostProcessor {
public:
  WrapProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void process(std::vector<int32_t> &ids) const override {
    ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }
  size_t addedCount() const override { return before_.size() + after_.size(); }
  void surroundingIds(std::vector<int32_t> &before,
                      std::vector<int32_t> &after) const override {
    before.insert(before.end(), before_.begin(), before_.end());
    after.insert(after.end(), after_.begin(), after_.end());
  }

private:
  std::vector<int32_t> before_, after_;
};

class SequenceProcessor : public PostProcessor {
public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void process(std::vector<int32_t> &ids) const override {
    for (const auto &p : parts_)
      p->process(ids);
  }
  size_t addedCount() const override {
    size_t n = 0;
    for (const auto &p : parts_)
      n += p->addedCount();
    return n;
  }
  void surroundingIds(std::vector<int32_t> &before,
                      std::vector<int32_t> &after) const override {
    // Later stages wrap the output of earlier ones.
    for (auto it = parts_.rbegin(); it != parts_.rend(); ++it)
      (*it)->surroundingIds(before, after);
  }

private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> makeTemplate(const Json &j,
                                            const std::string &where) {
  const Json *specials = field(j, "special_tokens", where);
  if (specials && !specials->is_null() && !specials->is_object())
    throw LoadError(where + ".special_tokens must be an object");
  auto idsOf = [&](const std::string &name, const std::string &at) {
    const Json *entry =
        specials && specials->is_object() ? field(*specials, name.c_str(), at)
                                          : nullptr;
    if (!entry)
      throw LoadError(at + ": special token '" + name +
                      "' is not listed in special_tokens");
    const Json &arr = getArray(*entry, "ids", where + ".special_tokens." + name);
    std::vector<int32_t> ids;
    for (size_t i = 0; i < arr.size(); ++i)
      ids.push_back(int32_t(asInt(arr[i], where + ".special_tokens." + name +
                                              ".ids[" + std::to_string(i) + "]",
                                  0, kMaxTokenId)));
    return ids;
  };

  const Json &single = getArray(j, "single", where);
  std::vector<int32_t> before, after;
  bool seenSequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    std::string at = where + ".single[" + std::to_string(i) + "]";
    const Json &piece = single[i];
    if (const Json *st = field(piece, "SpecialToken", at)) {
      std::vector<int32_t> ids = idsOf(getString(*st, "id", at), at);
      auto &dst = seenSequence ? after : before;
      dst.insert(dst.end(), ids.begin(), ids.end());
    } else if (const Json *sq = field(piece, "Sequence", at)) {
      std::string id = getString(*sq, "id", at);
      if (id != "A")
        throw LoadError(at + ": the single template may only use sequence A");
      if (seenSequence)
        throw LoadError(at + ": sequence A appears twice");
      seenSequence = true;
    } else {
      throw LoadError(at + " must be {\"SpecialToken\": ...} or "
                           "{\"Sequence\": ...}");
    }
  }
  if (!seenSequence)
    throw LoadError(where + ".single does not contain sequence A");
  return std::make_unique<WrapProcessor>(std::move(before), std::move(after));
}

/// BertProcessing / RobertaProcessing: {"cls": ["<s>", 0], "sep": [...]}.
std::vector<int32_t> tokenPairId(const Json &j, const char *key,
                                 const std::string &where) {
  const Json *v = field(j, key, where);
  if (!v || !v->is_array() || v->size() != 2 || !(*v)[0].is_string())
    throw LoadError(where + "." + key + " must be [token, id]");
  return {int32_t(asInt((*v)[1], where + "." + key + "[1]", 0, kMaxTokenId))};
}

} // namespace

std::unique_ptr<PostProcessor> makePostProcessor(const Json &j,
                                                 const std::string &path) {
  if (j.is_null())
    return nullptr;
  std::string type = getType(j, path);
  std::string where = path + " (" + type + ")";
  if (type == "TemplateProcessing")
    return makeTemplate(j, where);
  if (type == "ByteLevel")
    return nullptr; // only adjusts offsets, never ids
  if (type == "BertProcessing" || type == "RobertaProcessing")
    return std::make_unique<WrapProcessor>(tokenPairId(j, "cls", where),
                                           tokenPairId(j, "sep", where));
  if (type == "Sequence") {
    const Json &arr = getArray(j, "processors", where);
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < arr.size(); ++i)
      if (auto p = makePostProcessor(arr[i], path + ".processors[" +
                                                 std::to_string(i) + "]"))
        parts.push_back(std::move(p));
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  throw LoadError(path + ": unsupported post_processor type '" + type +
                  "' (supported: TemplateProcessing, ByteLevel, "
                  "BertProcessing, RobertaProcessing, Sequence)");
}

} // namespace qrt::tok
