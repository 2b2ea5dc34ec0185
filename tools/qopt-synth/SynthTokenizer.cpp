//===- SynthTokenizer.cpp - a small byte-level BPE tokenizer ----------===//
//
// Training follows the usual BPE recipe on words split the way GPT-2's
// pre-tokenizer splits ASCII text; ties between equally frequent pairs go
// to the lexicographically smallest, so the merges are the same on every
// machine. The text is short, so the merges stop when no pair occurs
// twice; a larger model vocabulary simply leaves ids unused.
//
//===----------------------------------------------------------------------===//
#include "SynthTokenizer.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <algorithm>
#include <map>
#include <vector>

namespace qopt {

namespace {

/// Original prose, ASCII only, to learn merges from.
const char *kTrainingText =
    "The lighthouse keeper climbed the stairs every evening before the sun went down. "
    "He counted the steps as he went, one hundred and twelve of them, and at the top he "
    "wound the clockwork that turned the great lamp. From the gallery he could see the "
    "whole of the bay: the fishing boats coming home, the gulls following them, and the "
    "long grey line of the far shore.\n"
    "His daughter kept the log. She wrote the time the lamp was lit, the state of the sea, "
    "the direction of the wind and the ships that passed. When a storm came she wrote more, "
    "and when the weather was calm she wrote less, but she never missed a day. \"A record "
    "that is kept only when it is easy,\" her father said, \"is not a record at all.\"\n"
    "In the winter of the great storm the lamp burned for three days without stopping. "
    "The keeper and his daughter took turns to sleep, and they trimmed the wick every four "
    "hours. On the second night a ship ran close to the rocks, and for a long minute they "
    "watched it turn, slowly, against the wind. Then it found the channel and was gone.\n"
    "Years later a letter arrived from the captain of that ship. He had been a young man "
    "then, he wrote, and he had not known the coast. He had seen the light and he had "
    "trusted it, and that was all he could say. The daughter read the letter twice, and "
    "then she put it in the log, at the page for the second night of the storm.\n"
    "Numbers in the log were written plainly: 3 boats at 6 o'clock, wind from the west at "
    "20 knots, 112 steps, 4 hours, 1 lamp. She liked numbers because they did not change "
    "their meaning, and she liked words because they did. It's the words that we remember, "
    "she thought, and the numbers that we can't argue with.\n"
    "When the keeper grew old, she climbed the stairs in his place. She still counted the "
    "steps. There were still one hundred and twelve of them, and the lamp still turned, "
    "and the boats still came home in the evening with the gulls behind them.\n";

/// GPT-2's byte -> printable character table, as UTF-8 strings.
std::vector<std::string> byteSymbols() {
  std::vector<std::string> sym(256);
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xc0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3f));
    }
    return s;
  };
  uint32_t extra = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    sym[b] = utf8(printable ? b : extra++);
  }
  return sym;
}

bool isLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/// Splits ASCII text as GPT-2's pre-tokenizer regex does:
/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::string> preTokenize(const std::string &t) {
  std::vector<std::string> out;
  size_t i = 0, n = t.size();
  while (i < n) {
    size_t j = i;
    if (t[i] == '\'') {
      for (const char *c : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        size_t len = std::char_traits<char>::length(c);
        if (t.compare(i + 1, len, c) == 0) {
          j = i + 1 + len;
          break;
        }
      }
    }
    if (j == i) {
      size_t k = (t[i] == ' ' && i + 1 < n) ? i + 1 : i;
      if (isLetter(t[k])) {
        for (j = k; j < n && isLetter(t[j]); ++j) {}
      } else if (isDigit(t[k])) {
        for (j = k; j < n && isDigit(t[j]); ++j) {}
      } else if (!isSpace(t[k])) {
        for (j = k; j < n && !isSpace(t[j]) && !isLetter(t[j]) && !isDigit(t[j]); ++j) {}
      } else {
        size_t e = i;
        while (e < n && isSpace(t[e]))
          ++e;
        j = (e == n || e - i == 1) ? e : e - 1;
      }
    }
    out.push_back(t.substr(i, j - i));
    i = j;
  }
  return out;
}

} // namespace

std::string synthTokenizerJSON(int64_t maxVocab, int64_t *vocabSize) {
  std::vector<std::string> sym = byteSymbols();
  // Vocabulary order: specials, then bytes by their symbol's code point.
  std::vector<std::string> vocab = {"<s>", "</s>"};
  {
    std::vector<std::pair<std::string, int>> bySymbol;
    for (int b = 0; b < 256; ++b) {
      // Decode the (1- or 2-byte) UTF-8 symbol back to its code point for ordering.
      const std::string &s = sym[b];
      uint32_t cp = s.size() == 1 ? uint8_t(s[0])
                                  : ((uint32_t(uint8_t(s[0])) & 0x1f) << 6) | (uint8_t(s[1]) & 0x3f);
      bySymbol.emplace_back(s, int(cp));
    }
    std::sort(bySymbol.begin(), bySymbol.end(),
              [](const auto &a, const auto &b) { return a.second < b.second; });
    for (auto &p : bySymbol)
      vocab.push_back(p.first);
  }

  // Words as symbol sequences, with counts.
  std::map<std::vector<std::string>, int64_t> words;
  for (const std::string &w : preTokenize(kTrainingText)) {
    std::vector<std::string> s;
    for (unsigned char c : w)
      s.push_back(sym[c]);
    ++words[s];
  }

  std::vector<std::pair<std::string, std::string>> merges;
  int64_t budget = std::max<int64_t>(0, std::min<int64_t>(maxVocab - kSynthMinVocab, 1000));
  while (int64_t(merges.size()) < budget) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto &[w, count] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i)
        pairs[{w[i], w[i + 1]}] += count;
    const std::pair<std::string, std::string> *best = nullptr;
    int64_t bestCount = 1;
    for (const auto &[p, count] : pairs) // map order: ties go to the smallest pair
      if (count > bestCount) {
        best = &p;
        bestCount = count;
      }
    if (!best)
      break;
    auto merge = *best;
    merges.push_back(merge);
    vocab.push_back(merge.first + merge.second);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto &[w, count] : words) {
      std::vector<std::string> m;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == merge.first && w[i + 1] == merge.second) {
          m.push_back(merge.first + merge.second);
          ++i;
        } else {
          m.push_back(w[i]);
        }
      }
      next[m] += count;
    }
    words = std::move(next);
  }
  *vocabSize = int64_t(vocab.size());

  namespace json = llvm::json;
  json::Object vocabObj;
  for (size_t i = 0; i < vocab.size(); ++i)
    vocabObj[vocab[i]] = int64_t(i);
  json::Array mergeArr;
  for (auto &m : merges)
    mergeArr.push_back(json::Array{m.first, m.second});
  auto special = [](int64_t id, const char *content) {
    return json::Object{{"id", id},           {"content", content}, {"single_word", false},
                        {"lstrip", false},    {"rstrip", false},    {"normalized", false},
                        {"special", true}};
  };
  auto byteLevel = [](bool prefixSpace) {
    return json::Object{{"type", "ByteLevel"},
                        {"add_prefix_space", prefixSpace},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  };
  json::Object post{
      {"type", "TemplateProcessing"},
      {"single", json::Array{json::Object{{"SpecialToken",
                                           json::Object{{"id", "<s>"}, {"type_id", 0}}}},
                             json::Object{{"Sequence", json::Object{{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", json::Array{json::Object{{"Sequence", json::Object{{"id", "A"}, {"type_id", 0}}}},
                           json::Object{{"Sequence", json::Object{{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       json::Object{{"<s>", json::Object{{"id", "<s>"},
                                         {"ids", json::Array{kSynthBosId}},
                                         {"tokens", json::Array{"<s>"}}}}}}};
  json::Object model{{"type", "BPE"},
                     {"dropout", nullptr},
                     {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false},
                     {"byte_fallback", false},
                     {"ignore_merges", false},
                     {"vocab", std::move(vocabObj)},
                     {"merges", std::move(mergeArr)}};
  json::Object root{{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", json::Array{special(kSynthBosId, "<s>"),
                                                 special(kSynthEosId, "</s>")}},
                    {"normalizer", nullptr},
                    {"pre_tokenizer", byteLevel(false)},
                    {"post_processor", std::move(post)},
                    {"decoder", byteLevel(true)},
                    {"model", std::move(model)}};
  return llvm::formatv("{0:2}", json::Value(std::move(root))).str() + "\n";
}

} // namespace qopt
