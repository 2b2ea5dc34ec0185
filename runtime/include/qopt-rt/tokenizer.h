//===- tokenizer.h - Hugging Face tokenizer.json runtime -------*- C++ -*-===//
//
// A self-contained reimplementation of the subset of Hugging Face
// `tokenizers` that LLMs use (byte-level BPE as in GPT-2 / Llama-3 / Qwen2,
// SentencePiece-style BPE with byte fallback as in Llama-2 / Mistral, added
// and special tokens, template post-processing). It reads `tokenizer.json`
// directly and aims for id-for-id agreement with `tokenizers` (checked by
// test/runtime/compare_tokenizers.py). Components it does not implement are
// rejected at load time with an error naming them, never silently ignored.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_H
#define QOPT_RT_TOKENIZER_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qrt {

namespace tok {
struct TokenizerImpl;
} // namespace tok

/// A loaded tokenizer. Immutable after loading; encode/decode may be called
/// from several threads at once (the BPE word cache is internally locked).
class Tokenizer {
public:
  /// Loads a Hugging Face tokenizer.json. On failure returns nullptr and sets
  /// *error (when non-null) to one line naming the file and the problem.
  static std::unique_ptr<Tokenizer> fromFile(const std::string &path,
                                             std::string *error);
  /// Same as fromFile for JSON already in memory; `nameForErrors` is the name
  /// used at the start of error messages.
  static std::unique_ptr<Tokenizer> fromJson(const std::string &jsonText,
                                             const std::string &nameForErrors,
                                             std::string *error);

  ~Tokenizer();
  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

  /// Encodes like HF tokenizers' `encode(text, add_special_tokens=addSpecial)
  /// .ids`, including the file's truncation and padding settings. Invalid
  /// UTF-8 in `text` is first replaced by U+FFFD (one per maximal invalid
  /// subsequence, as Python's `bytes.decode(errors="replace")` does).
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecial = false) const;

  /// Decodes like HF `decode(ids, skip_special_tokens=skipSpecial)`. Ids
  /// that name no token are skipped. The result is always valid UTF-8.
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecial = false) const;

  /// The raw bytes one token contributes to decoded text when it is not the
  /// first token: byte-level tokens give their bytes, `<0xNN>` fallback
  /// tokens give byte NN, `▁` becomes a space. The bytes may be an
  /// incomplete UTF-8 sequence (a character split over several tokens). To
  /// stream text, either append these bytes to a buffer and print only up
  /// to its last complete UTF-8 character, or - simpler and exact - use
  /// StreamDecoder, which also applies sequence-level rules such as
  /// dropping the first token's leading space. Empty for unknown ids.
  std::string tokenBytes(int32_t id) const;

  /// One more than the largest id the tokenizer knows (model vocabulary and
  /// added tokens): the size an embedding table must have.
  int32_t vocabSize() const;
  /// Id of a token string (added tokens first, then the model vocabulary).
  std::optional<int32_t> tokenToId(std::string_view token) const;
  /// Token string of an id, as stored in the vocabulary (e.g. "Ġthe").
  std::optional<std::string> idToToken(int32_t id) const;
  /// True when decode(..., skipSpecial=true) drops `id`: its token text is
  /// that of an added token marked `special` (HF compares texts, so a
  /// special token with normalized=true under a Prepend normalizer is not
  /// dropped).
  bool isSpecial(int32_t id) const;
  /// Beginning-of-sequence id: the first special token of the post
  /// processor's single-sequence template, else an added/vocab token named
  /// <s>, <|begin_of_text|>, <bos> or <|startoftext|>.
  std::optional<int32_t> bosId() const;
  /// End-of-sequence id: a special token the template appends after the
  /// sequence, else a token named </s>, <|end_of_text|>, <|endoftext|>,
  /// <eos>, <|eot_id|> or <|im_end|> (first found). Chat models often stop on
  /// further ids listed in generation_config.json; callers should add those.
  std::optional<int32_t> eosId() const;

private:
  explicit Tokenizer(std::unique_ptr<tok::TokenizerImpl> impl);
  std::unique_ptr<tok::TokenizerImpl> impl_;
  friend class StreamDecoder;
};

/// Turns a stream of generated ids into text pieces that are always complete
/// UTF-8 and whose concatenation equals `decode(all ids)`. It re-decodes a
/// short window of recent ids each step (the approach of HF's DecodeStream),
/// so it honours every decoder rule. Text is held back while the window ends
/// in an incomplete character, and while it ends in a byte-fallback token
/// (<0xNN>): HF turns a whole run of those into U+FFFD if any byte is bad, so
/// the run's text is only final once a normal token ends it. Runs longer than
/// 64 ids are emitted early at complete characters (and unconditionally past
/// 1024), where only a later bad byte could still make the output differ.
class StreamDecoder {
public:
  /// `tokenizer` must outlive this object.
  explicit StreamDecoder(const Tokenizer &tokenizer, bool skipSpecial = false);
  /// Feeds one id; returns the newly completed text (often empty).
  std::string push(int32_t id);
  /// Returns any text still held back (incomplete characters come out as
  /// U+FFFD) and resets the stream.
  std::string flush();
  /// Forgets all state, e.g. before a new generation.
  void reset();

private:
  const Tokenizer &tokenizer_;
  bool skipSpecial_;
  std::vector<int32_t> window_; ///< ids whose text is (partly) pending
  std::string prefixText_;      ///< decode of window_[0, prefixCount_)
  size_t prefixCount_ = 0;      ///< ids already emitted, kept as context
};

} // namespace qrt

#endif // QOPT_RT_TOKENIZER_H
