//===- StreamDecoder.cpp - incremental detokenization --------------------===//
//
// Each step decodes [context ids + pending ids] and emits what goes beyond
// the decoded context, unless the result ends in U+FFFD (an unfinished
// character) - then it waits for more ids. After emitting, the pending ids
// become the context for the next step, so sequence-level decoder rules
// (like dropping the first token's leading space) stay consistent.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include "Decoders.h"
#include "TokenizerImpl.h"
#include "Utf8.h"

namespace qrt {

namespace {
// A run of ids that legitimately decodes to U+FFFD (invalid bytes) would
// otherwise be held back forever; past this many pending ids it is emitted.
constexpr size_t kMaxPendingIds = 16;
// HF's ByteFallback decoder judges a run of <0xNN> tokens as a whole: one
// bad byte turns the entire run into U+FFFDs, retroactively. So the run is
// held (without decoding, so holding is cheap) until a token ends it; a run
// longer than kByteRunCheck is emitted early when it ends on a complete
// character, and unconditionally past kMaxByteRun. Output then differs from
// decode() only if such a long run later proves invalid.
constexpr size_t kByteRunCheck = 64;
constexpr size_t kMaxByteRun = 1024;

bool endsWithReplacement(const std::string &s) {
  return s.size() >= 3 &&
         s.compare(s.size() - 3, 3, tok::utf8::kReplacement) == 0;
}
} // namespace

StreamDecoder::StreamDecoder(const Tokenizer &tokenizer, bool skipSpecial)
    : tokenizer_(tokenizer), skipSpecial_(skipSpecial) {}

void StreamDecoder::reset() {
  window_.clear();
  prefixText_.clear();
  prefixCount_ = 0;
}

std::string StreamDecoder::push(int32_t id) {
  window_.push_back(id);
  size_t pending = window_.size() - prefixCount_;
  // Ids that add no text of their own (unknown ids, special tokens being
  // skipped) and byte tokens do not end a byte run: hold them.
  const tok::TokenizerImpl &impl = *tokenizer_.impl_;
  const std::string *token = impl.tokenText(id);
  bool byteLike = !token || tok::parseByteToken(*token) >= 0 ||
                  (skipSpecial_ && impl.added.isSpecialContent(*token));
  if (byteLike && pending < kByteRunCheck)
    return std::string();
  std::string text = tokenizer_.decode(window_, skipSpecial_);
  bool forced = pending > (byteLike ? kMaxByteRun : kMaxPendingIds);
  if (!forced &&
      (text.size() <= prefixText_.size() || endsWithReplacement(text)))
    return std::string();
  std::string out;
  if (text.compare(0, prefixText_.size(), prefixText_) == 0) {
    out = text.substr(prefixText_.size());
  } else {
    // The context decoded differently with more ids after it (should not
    // happen with HF decoders); emit only what follows the common prefix.
    size_t k = 0;
    while (k < text.size() && k < prefixText_.size() &&
           text[k] == prefixText_[k])
      ++k;
    while (k > 0 && k < text.size() &&
           (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80)
      --k;
    out = text.substr(k);
  }
  window_.erase(window_.begin(),
                window_.begin() + std::ptrdiff_t(prefixCount_));
  prefixCount_ = window_.size();
  prefixText_ = tokenizer_.decode(window_, skipSpecial_);
  return out;
}

std::string StreamDecoder::flush() {
  std::string text = tokenizer_.decode(window_, skipSpecial_);
  std::string out;
  if (text.size() > prefixText_.size() &&
      text.compare(0, prefixText_.size(), prefixText_) == 0)
    out = text.substr(prefixText_.size());
  reset();
  return out;
}

} // namespace qrt
