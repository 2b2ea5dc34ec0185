//===- StopChecker.h - end-of-generation rules and streamed text -*- C++ -*-===//
//
// Per request: turns generated ids into text (StreamDecoder) and decides when
// generation ends - EOS or a stop id, a stop string in the text, max_tokens,
// or the context length. Stop strings are matched on the detokenized text,
// not on ids, since one string can span several tokens and one token can
// hold a string's end plus more text. While a stop string could still be
// completing, the last (longest stop - 1) bytes are held back from the
// stream so the client never receives text that is later cut off (vLLM's
// policy).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_STOPCHECKER_H
#define QOPT_RT_SERVING_STOPCHECKER_H

#include "qopt-rt/serving/Request.h"
#include "qopt-rt/tokenizer.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt::serving {

/// Stop rules and incremental text of one request.
class StopChecker {
public:
  /// `tokenizer` may be null: then there is no text and stop strings are
  /// ignored (the engine refuses requests that have some). `tokenizer` and
  /// `eosIds` must outlive this object.
  StopChecker(const Tokenizer *tokenizer, const SamplingParams &params,
              const std::vector<int32_t> &eosIds);

  /// Feeds the request's next generated token. `numGenerated` counts it;
  /// `totalLen` is prompt + generated; `maxTotal` the context limit.
  /// Returns why generation ends, or FinishReason::None to go on.
  FinishReason push(int32_t token, int32_t numGenerated, int32_t totalLen,
                    int32_t maxTotal);
  /// Text that became final since the previous call (everything once
  /// finished).
  std::string takeNewText();
  /// All text so far, including what is held back.
  const std::string &text() const { return text_; }
  /// The stop string or stop id that ended generation ("" otherwise).
  const std::string &stopReason() const { return stopReason_; }

private:
  bool findStopString(size_t newFrom);

  const SamplingParams &params_;
  const std::vector<int32_t> &eos_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::string text_;
  std::string stopReason_;
  size_t emitted_ = 0;
  size_t maxStopLen_ = 0;
  bool finished_ = false;
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_STOPCHECKER_H
