//===- AddedVocabulary.cpp - added/special tokens of a tokenizer ---------===//
#include "AddedVocabulary.h"

#include "Bpe.h"
#include "Normalizers.h"
#include "Regex.h"
#include "Utf8.h"

#include <algorithm>

namespace qrt::tok {

//===- TokenTrie ---------------------------------------------------------===//

int32_t TokenTrie::child(int32_t node, unsigned char b) const {
  for (const auto &[byte, idx] : nodes_[node].next)
    if (byte == b)
      return idx;
  return -1;
}

void TokenTrie::insert(const std::string &pattern, int32_t value) {
  if (pattern.empty())
    return;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    int32_t c = child(node, b);
    if (c < 0) {
      c = int32_t(nodes_.size());
      nodes_.emplace_back();
      nodes_[node].next.emplace_back(b, c);
    }
    node = c;
  }
  // With duplicate patterns the first one inserted wins, as in aho-corasick.
  if (nodes_[node].value < 0)
    nodes_[node].value = value;
  firstByte_[static_cast<unsigned char>(pattern[0])] = true;
}

bool TokenTrie::findFrom(std::string_view s, size_t from, size_t &start,
                         size_t &end, int32_t &value) const {
  for (size_t p = from; p < s.size(); ++p) {
    if (!firstByte_[static_cast<unsigned char>(s[p])])
      continue;
    int32_t node = 0;
    size_t bestEnd = 0;
    int32_t bestValue = -1;
    for (size_t q = p; q < s.size(); ++q) {
      node = child(node, static_cast<unsigned char>(s[q]));
      if (node < 0)
        break;
      if (nodes_[node].value >= 0) {
        bestEnd = q + 1;
        bestValue = nodes_[node].value;
      }
    }
    if (bestValue >= 0) {
      start = p;
      end = bestEnd;
      value = bestValue;
      return true;
    }
  }
  return false;
}

//===- AddedVocabulary ---------------------------------------------------===//

namespace {

// Rust regex's Unicode \w, which HF uses to decide single_word matches.
bool isWordChar(std::string_view ch) {
  static const Regex word("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}"
                          "\\p{Join_Control}]",
                          Regex::Syntax::Pcre, "word class");
  std::vector<std::pair<size_t, size_t>> m;
  word.findAll(ch, m);
  return !m.empty();
}

std::string_view lastChar(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80)
    --i;
  return s.substr(i > 0 ? i - 1 : 0);
}

std::string_view firstChar(std::string_view s) {
  return s.substr(0, utf8::charLength(static_cast<unsigned char>(s[0])));
}

} // namespace

void AddedVocabulary::load(const Json &arr, const std::string &path,
                           const BpeModel &model) {
  if (arr.is_null())
    return;
  if (!arr.is_array())
    throw LoadError(path + " must be an array");
  for (size_t i = 0; i < arr.size(); ++i) {
    std::string at = path + "[" + std::to_string(i) + "]";
    const Json &e = arr[i];
    AddedToken t;
    t.content = getString(e, "content", at);
    getIntOr(e, "id", at, 0, kMaxTokenId, 0); // range check only, see header
    t.special = getBoolOr(e, "special", at, false);
    t.singleWord = getBoolOr(e, "single_word", at, false);
    t.lstrip = getBoolOr(e, "lstrip", at, false);
    t.rstrip = getBoolOr(e, "rstrip", at, false);
    t.normalized = getBoolOr(e, "normalized", at, !t.special);

    // One token at a time, in file order, mirroring HF's deserializer.
    if (t.special && !specialContents_.count(t.content) && !t.content.empty()) {
      specialOrder_.push_back(t);
      specialContents_.insert(t.content);
    }
    if (t.content.empty())
      continue;
    // A content has one id, so an identical token can only sit there.
    auto known = contentToId_.find(t.content);
    if (known != contentToId_.end() && idToToken_.at(known->second) == t)
      continue;
    int32_t id;
    if (known != contentToId_.end()) {
      id = known->second;
    } else if (auto mid = model.tokenToId(t.content)) {
      id = *mid;
    } else {
      int32_t vocab = int32_t(model.vocabEntries());
      if (idLimit_ == 0)
        id = vocab;
      else
        id = (idLimit_ - 1 >= vocab || vocab == 0) ? idLimit_ : vocab;
      if (id > kMaxTokenId)
        throw LoadError(at + ": too many added tokens");
    }
    contentToId_[t.content] = id;
    idToToken_[id] = t;
    idLimit_ = std::max(idLimit_, id + 1);
    if (!specialContents_.count(t.content))
      plainOrder_.push_back(t);
  }
}

void AddedVocabulary::buildMatchers(const Normalizer *normalizer) {
  auto add = [&](const AddedToken &t) {
    int32_t id = contentToId_.at(t.content);
    if (!t.normalized) {
      rawTrie_.insert(t.content, id);
      return;
    }
    std::string pattern = t.content;
    if (normalizer)
      normalizer->normalize(pattern);
    normalizedTrie_.insert(pattern, id);
  };
  for (const AddedToken &t : specialOrder_)
    add(t);
  for (const AddedToken &t : plainOrder_)
    add(t);
  for (auto &[id, t] : idToToken_) {
    t.text = t.content;
    if (t.normalized && normalizer)
      normalizer->normalize(t.text);
  }
}

void AddedVocabulary::split(
    const std::string &text, bool atOrigin, const TokenTrie &trie,
    const std::function<void(std::string, bool)> &onText,
    std::vector<Segment> &out) const {
  if (text.empty())
    return;
  if (trie.empty()) {
    onText(text, atOrigin);
    return;
  }
  std::string_view s(text);
  size_t consumed = 0, searchFrom = 0, b, e;
  int32_t id;
  while (trie.findFrom(s, searchFrom, b, e, id)) {
    // Matching resumes after this match even if it is vetoed below
    // (non-overlapping iteration, as HF's aho-corasick scan).
    searchFrom = e;
    const AddedToken &t = idToToken_.at(id);
    if (t.singleWord) {
      bool startOk = b == 0 || !isWordChar(lastChar(s.substr(0, b)));
      bool stopOk = e == s.size() || !isWordChar(firstChar(s.substr(e)));
      if (!startOk || !stopOk)
        continue;
    }
    if (t.lstrip) {
      size_t nb = b;
      while (nb > 0) {
        std::string_view ch = lastChar(s.substr(0, nb));
        size_t k = 0;
        if (!utf8::isWhiteSpace(utf8::next(ch, k)))
          break;
        nb -= ch.size();
      }
      b = std::max(nb, consumed);
    }
    if (t.rstrip) {
      while (e < s.size()) {
        size_t k = e;
        if (!utf8::isWhiteSpace(utf8::next(s, k)))
          break;
        e = k;
      }
    }
    if (b < consumed) // only possible with tokens that start with spaces
      b = consumed;
    if (consumed < b)
      onText(text.substr(consumed, b - consumed), atOrigin && consumed == 0);
    out.push_back({id, std::string(), false});
    consumed = std::max(consumed, e);
  }
  if (consumed < s.size())
    onText(text.substr(consumed), atOrigin && consumed == 0);
}

void AddedVocabulary::extract(const std::string &text,
                              const Normalizer *normalizer,
                              std::vector<Segment> &out) const {
  auto keepText = [&](std::string piece, bool atOrigin) {
    out.push_back({-1, std::move(piece), atOrigin});
  };
  auto normalizeThenSplit = [&](std::string piece, bool atOrigin) {
    if (normalizer)
      normalizer->normalize(piece);
    split(piece, atOrigin, normalizedTrie_, keepText, out);
  };
  split(text, true, rawTrie_, normalizeThenSplit, out);
}

std::optional<int32_t> AddedVocabulary::tokenToId(std::string_view c) const {
  auto it = contentToId_.find(std::string(c));
  if (it == contentToId_.end())
    return std::nullopt;
  return it->second;
}

const AddedToken *AddedVocabulary::byId(int32_t id) const {
  auto it = idToToken_.find(id);
  return it == idToToken_.end() ? nullptr : &it->second;
}

bool AddedVocabulary::isSpecialContent(const std::string &content) const {
  return specialContents_.count(content) != 0;
}

} // namespace qrt::tok
