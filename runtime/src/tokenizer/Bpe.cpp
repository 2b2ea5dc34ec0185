//===- Bpe.cpp - the BPE model of tokenizer.json --------------------------===//
#include "Bpe.h"

#include "Utf8.h"

#include <algorithm>
#include <cstdio>
#include <queue>

namespace qrt::tok {

namespace {
// Words longer than this are not cached (as in HF): they are rare, and
// caching them would let one huge input pin a lot of memory.
constexpr size_t kMaxCachedWordBytes = 256;
// The cache is dropped wholesale when it reaches this many words, bounding
// memory on adversarial input at the cost of a few recomputations.
constexpr size_t kMaxCacheEntries = 1 << 18;

std::string quoteToken(const std::string &s) {
  return "'" + (s.size() > 40 ? s.substr(0, 40) + "..." : s) + "'";
}
} // namespace

std::unique_ptr<BpeModel> BpeModel::fromJson(const Json &j,
                                             const std::string &path) {
  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  const Json *dropout = field(j, "dropout", path);
  if (dropout && !dropout->is_null()) {
    if (!dropout->is_number())
      throw LoadError(path + ".dropout must be a number or null");
    double p = dropout->get<double>();
    if (p != 0.0 && p != 1.0)
      throw LoadError(path + ".dropout = " + std::to_string(p) +
                      ": BPE dropout (random tokenization) is not supported");
  }
  m->fuseUnk_ = getBoolOr(j, "fuse_unk", path, false);
  m->byteFallback_ = getBoolOr(j, "byte_fallback", path, false);
  m->ignoreMerges_ = getBoolOr(j, "ignore_merges", path, false);
  m->prefix_ = getStringOr(j, "continuing_subword_prefix", path, "");
  m->suffix_ = getStringOr(j, "end_of_word_suffix", path, "");

  const Json *vocab = field(j, "vocab", path);
  if (!vocab || !vocab->is_object())
    throw LoadError(path + ".vocab must be an object of token -> id");
  m->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    int32_t id = int32_t(asInt(it.value(), path + ".vocab[" +
                                               quoteToken(it.key()) + "]",
                               0, kMaxTokenId));
    m->vocab_[it.key()] = id;
  }
  m->idToToken_.reserve(m->vocab_.size());
  for (const auto &[tok, id] : m->vocab_) {
    // Duplicate ids: keep the lexicographically smallest token, so loading
    // is deterministic whatever the hash order.
    auto [slot, fresh] = m->idToToken_.emplace(id, &tok);
    if (!fresh && tok < *slot->second)
      slot->second = &tok;
    m->idLimit_ = std::max(m->idLimit_, id + 1);
  }

  // The byte-fallback ids are looked up by their exact spelling ("<0x0A>"),
  // as HF does; tokens such as "<0x-1>" simply never match.
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m->vocab_.find(name);
    m->byteIds_[b] = it == m->vocab_.end() ? -1 : it->second;
  }

  std::string unk = getStringOr(j, "unk_token", path, "");
  if (!unk.empty()) {
    auto it = m->vocab_.find(unk);
    if (it != m->vocab_.end())
      m->unkId_ = it->second;
    // An unk token missing from the vocabulary makes HF fail at encode time
    // on unknown characters; here those characters are dropped instead.
  }

  const Json *merges = field(j, "merges", path);
  if (merges && !merges->is_null()) {
    if (!merges->is_array())
      throw LoadError(path + ".merges must be an array");
    m->merges_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const Json &e = (*merges)[i];
      std::string where = path + ".merges[" + std::to_string(i) + "]";
      std::string a, b;
      if (e.is_string()) {
        // Legacy "a b" form: exactly one space separates the two tokens.
        const std::string &s = e.get_ref<const std::string &>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          throw LoadError(where + " = " + quoteToken(s) +
                          " must be two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() &&
                 e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        throw LoadError(where + " must be \"a b\" or [\"a\", \"b\"]");
      }
      auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
      if (ia == m->vocab_.end())
        throw LoadError(where + ": token " + quoteToken(a) + " is not in the vocab");
      if (ib == m->vocab_.end())
        throw LoadError(where + ": token " + quoteToken(b) + " is not in the vocab");
      // With a continuing-subword prefix, "a" + "##b" merges into "ab".
      if (b.compare(0, m->prefix_.size(), m->prefix_) != 0)
        throw LoadError(where + ": token " + quoteToken(b) +
                        " lacks the continuing_subword_prefix");
      std::string merged = a + b.substr(m->prefix_.size());
      auto in = m->vocab_.find(merged);
      if (in == m->vocab_.end())
        throw LoadError(where + ": merged token " + quoteToken(merged) +
                        " is not in the vocab");
      // Like HF, a repeated pair takes the rank of its last occurrence.
      m->merges_[pairKey(ia->second, ib->second)] = {uint32_t(i), in->second};
    }
  }
  return m;
}

std::optional<int32_t> BpeModel::tokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end())
    return std::nullopt;
  return it->second;
}

const std::string *BpeModel::idToToken(int32_t id) const {
  auto it = idToToken_.find(id);
  return it == idToToken_.end() ? nullptr : it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t> &out) const {
  if (word.empty())
    return;
  bool cacheable = word.size() < kMaxCachedWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cacheMutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t mark = out.size();
  if (ignoreMerges_) {
    if (auto id = tokenToId(word))
      out.push_back(*id);
    else
      mergeWord(word, out);
  } else {
    mergeWord(word, out);
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex_);
    if (cache_.size() >= kMaxCacheEntries)
      cache_.clear();
    cache_.emplace(std::move(key),
                   std::vector<int32_t>(out.begin() + mark, out.end()));
  }
}

void BpeModel::mergeWord(std::string_view w, std::vector<int32_t> &out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next; // -1 at the ends
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id) {
    int32_t n = int32_t(syms.size());
    if (n > 0)
      syms.back().next = n;
    syms.push_back({id, n - 1, -1, true});
  };

  // Pending unknown run: (unk id), added lazily so that fuse_unk can merge
  // consecutive unknown characters into one unk.
  bool pendingUnk = false;
  std::string key;
  for (size_t i = 0; i < w.size();) {
    size_t len = utf8::charLength(static_cast<unsigned char>(w[i]));
    if (i + len > w.size())
      len = w.size() - i;
    bool first = i == 0, last = i + len == w.size();
    key.clear();
    if (!first)
      key += prefix_;
    key.append(w.data() + i, len);
    if (last)
      key += suffix_;
    i += len;

    auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      if (pendingUnk) {
        add(*unkId_);
        pendingUnk = false;
      }
      add(it->second);
      continue;
    }
    if (byteFallback_) {
      bool all = true;
      for (unsigned char b : key)
        all = all && byteIds_[b] >= 0;
      if (all) {
        // HF emits these without first flushing a pending unk.
        for (unsigned char b : key)
          add(byteIds_[b]);
        continue;
      }
    }
    if (unkId_) {
      if (pendingUnk && !fuseUnk_)
        add(*unkId_);
      pendingUnk = true;
    }
  }
  if (pendingUnk)
    add(*unkId_);

  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t newId;
    bool operator>(const Candidate &o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>,
                      std::greater<Candidate>>
      heap;
  for (size_t k = 0; k + 1 < syms.size(); ++k)
    if (const MergeInfo *m = findMerge(syms[k].id, syms[k + 1].id))
      heap.push({m->rank, int32_t(k), m->newId});

  while (!heap.empty()) {
    Candidate top = heap.top();
    heap.pop();
    Symbol &left = syms[top.pos];
    if (!left.alive || left.next < 0)
      continue;
    int32_t rightPos = left.next;
    Symbol &right = syms[rightPos];
    // Entries go stale when a neighbour merged first; recheck the pair.
    const MergeInfo *m = findMerge(left.id, right.id);
    if (!m || m->newId != top.newId)
      continue;
    left.id = top.newId;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0)
      syms[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (const MergeInfo *pm = findMerge(syms[left.prev].id, left.id))
        heap.push({pm->rank, left.prev, pm->newId});
    if (left.next >= 0)
      if (const MergeInfo *nm = findMerge(left.id, syms[left.next].id))
        heap.push({nm->rank, top.pos, nm->newId});
  }
  for (const Symbol &s : syms)
    if (s.alive)
      out.push_back(s.id);
}

} // namespace qrt::tok
