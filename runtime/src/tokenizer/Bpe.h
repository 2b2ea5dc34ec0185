//===- Bpe.h - the BPE model of tokenizer.json ------------------*- C++ -*-===//
//
// Byte-pair encoding as HF tokenizers' `BPE` model does it: start from one
// symbol per character (or byte-fallback tokens / unk), then repeatedly apply
// the lowest-ranked merge present in the word, leftmost first. A heap of
// candidate pairs over a linked list of symbols makes each word
// O(n log n); a per-word cache makes repeated words free.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_BPE_H
#define QOPT_RT_TOKENIZER_BPE_H

#include "Json.h"

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qrt::tok {

class BpeModel {
public:
  /// Reads a {"type": "BPE", ...} model; throws LoadError on bad input.
  static std::unique_ptr<BpeModel> fromJson(const Json &j,
                                            const std::string &path);

  /// Appends the ids of one pre-tokenized piece.
  void tokenize(std::string_view word, std::vector<int32_t> &out) const;

  std::optional<int32_t> tokenToId(std::string_view token) const;
  /// Token text of `id`, or nullptr when the vocabulary has no such id.
  const std::string *idToToken(int32_t id) const;
  /// Number of vocabulary entries (HF's get_vocab_size()).
  size_t vocabEntries() const { return vocab_.size(); }
  /// One more than the largest id in the vocabulary.
  int32_t idLimit() const { return idLimit_; }

private:
  struct MergeInfo {
    uint32_t rank;
    int32_t newId;
  };
  static uint64_t pairKey(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  const MergeInfo *findMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(pairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  void mergeWord(std::string_view word, std::vector<int32_t> &out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  // A map, not a table indexed by id: a hostile file with one token at id
  // 16M must not make us allocate a 16M-entry table. Values point at the
  // (node-stable) keys of vocab_.
  std::unordered_map<int32_t, const std::string *> idToToken_;
  int32_t idLimit_ = 0;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::optional<int32_t> unkId_;
  bool fuseUnk_ = false;
  bool byteFallback_ = false;
  bool ignoreMerges_ = false;
  std::string prefix_; ///< continuing_subword_prefix
  std::string suffix_; ///< end_of_word_suffix
  std::array<int32_t, 256> byteIds_; ///< id of "<0xNN>", -1 if absent

  mutable std::mutex cacheMutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_BPE_H
