//===- SynthTokenizer.h - a small byte-level BPE tokenizer ----*- C++ -*-===//
//
// qopt-synth writes a tokenizer.json next to the random weights so that a
// synthesized model can be driven with text (perplexity, generation). It is
// a GPT-2 style byte-level BPE: <s> and </s> as special tokens 0 and 1, the
// 256 byte symbols as 2..257, then merges learned deterministically from a
// short built-in text.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TOOLS_QOPT_SYNTH_SYNTHTOKENIZER_H
#define QOPT_TOOLS_QOPT_SYNTH_SYNTHTOKENIZER_H

#include <cstdint>
#include <string>

namespace qopt {

/// Ids of the special tokens in the synthesized tokenizer.
constexpr int64_t kSynthBosId = 0;
constexpr int64_t kSynthEosId = 1;
/// Smallest vocabulary that holds the specials and all 256 bytes.
constexpr int64_t kSynthMinVocab = 258;

/// The tokenizer.json text for a vocabulary of at most `maxVocab` tokens
/// (>= kSynthMinVocab): specials, bytes, and up to maxVocab - 258 merges.
/// `*vocabSize` receives the number of tokens it holds.
std::string synthTokenizerJSON(int64_t maxVocab, int64_t *vocabSize);

} // namespace qopt

#endif
