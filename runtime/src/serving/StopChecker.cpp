//===- StopChecker.cpp - end-of-generation rules and streamed text --------===//
#include "qopt-rt/serving/StopChecker.h"

#include <algorithm>

namespace qrt::serving {

const char *finishReasonName(FinishReason r) {
  switch (r) {
  case FinishReason::None:
    return "none";
  case FinishReason::Stop:
    return "stop";
  case FinishReason::Length:
    return "length";
  case FinishReason::Abort:
    return "abort";
  case FinishReason::Error:
    return "error";
  }
  return "?";
}

StopChecker::StopChecker(const Tokenizer *tokenizer,
                         const SamplingParams &params,
                         const std::vector<int32_t> &eosIds)
    : params_(params), eos_(eosIds) {
  if (tokenizer)
    decoder_ = std::make_unique<StreamDecoder>(*tokenizer,
                                               params.skipSpecialTokens);
  for (const std::string &s : params_.stop)
    maxStopLen_ = std::max(maxStopLen_, s.size());
}

bool StopChecker::findStopString(size_t newFrom) {
  size_t best = std::string::npos;
  const std::string *hit = nullptr;
  for (const std::string &s : params_.stop) {
    // Only a match that ends in the new text is new.
    size_t from = newFrom >= s.size() - 1 ? newFrom - (s.size() - 1) : 0;
    size_t p = text_.find(s, from);
    if (p != std::string::npos && (p < best || (p == best && s.size() > hit->size()))) {
      best = p;
      hit = &s;
    }
  }
  if (!hit)
    return false;
  text_.resize(params_.includeStopStrInOutput ? best + hit->size() : best);
  stopReason_ = *hit;
  return true;
}

FinishReason StopChecker::push(int32_t token, int32_t numGenerated,
                               int32_t totalLen, int32_t maxTotal) {
  if (finished_)
    return FinishReason::Stop;
  FinishReason r = FinishReason::None;
  bool isStopId =
      (!params_.ignoreEos &&
       std::find(eos_.begin(), eos_.end(), token) != eos_.end()) ||
      std::find(params_.stopTokenIds.begin(), params_.stopTokenIds.end(),
                token) != params_.stopTokenIds.end();
  bool stringStop = false;
  if (isStopId) {
    // The stop id itself is not part of the text (as in vLLM).
    r = FinishReason::Stop;
    stopReason_ = std::to_string(token);
  } else if (decoder_) {
    size_t old = text_.size();
    text_ += decoder_->push(token);
    if (!params_.stop.empty() && text_.size() > old && findStopString(old)) {
      r = FinishReason::Stop;
      stringStop = true;
    }
  }
  if (r == FinishReason::None &&
      (numGenerated >= params_.maxTokens || totalLen >= maxTotal))
    r = FinishReason::Length;
  if (r != FinishReason::None && decoder_ && !stringStop) {
    // Release what the decoder held back (an incomplete character at the
    // very end becomes U+FFFD); it may still complete a stop string.
    size_t old = text_.size();
    text_ += decoder_->flush();
    if (!params_.stop.empty() && text_.size() > old && findStopString(old))
      r = FinishReason::Stop;
  }
  finished_ = r != FinishReason::None;
  return r;
}

std::string StopChecker::takeNewText() {
  size_t end = text_.size();
  if (!finished_ && !params_.includeStopStrInOutput && maxStopLen_ > 1)
    end = end > maxStopLen_ - 1 ? end - (maxStopLen_ - 1) : 0;
  // Never split a UTF-8 character across two pieces.
  while (end > emitted_ && end < text_.size() &&
         (static_cast<unsigned char>(text_[end]) & 0xC0) == 0x80)
    --end;
  if (end <= emitted_)
    return "";
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

} // namespace qrt::serving
