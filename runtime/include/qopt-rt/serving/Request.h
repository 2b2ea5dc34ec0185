//===- Request.h - what a client asks for and what it gets back -*- C++ -*-===//
//
// Plain data shared by the engine, the sampler and the stop checker. Field
// names follow vLLM's / OpenAI's where a concept exists there (max_tokens,
// top_k, top_p, stop, ignore_eos) so the qrun JSONL format can map 1:1.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SERVING_REQUEST_H
#define QOPT_RT_SERVING_REQUEST_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qrt::serving {

/// Identifies a request for its whole life (the engine assigns them).
using RequestId = int64_t;

/// How to choose tokens and when to stop.
struct SamplingParams {
  /// 0 means greedy (argmax, lowest id on ties); otherwise logits / T.
  float temperature = 1.0f;
  /// Keep only the k most likely tokens (ties with the k-th kept); 0 = off.
  int32_t topK = 0;
  /// Keep the smallest most-likely set whose probability reaches top_p
  /// (after top-k); 1 = off. In (0, 1].
  float topP = 1.0f;
  /// Makes the choice reproducible: the same seed, prompt and logits give
  /// the same tokens whatever else is running. Unset: the engine derives
  /// one from its own seed and the request id.
  std::optional<uint64_t> seed;
  /// Generated tokens at most (>= 1).
  int32_t maxTokens = 16;
  /// Do not stop on the end-of-sequence ids.
  bool ignoreEos = false;
  /// More ids that end generation (e.g. from generation_config.json).
  std::vector<int32_t> stopTokenIds;
  /// Generation ends when the text contains one of these; the text is cut
  /// before it (or after it when includeStopStrInOutput).
  std::vector<std::string> stop;
  bool includeStopStrInOutput = false;
  /// Leave special tokens out of the text (HF skip_special_tokens).
  bool skipSpecialTokens = true;
};

/// Why a request ended.
enum class FinishReason : uint8_t {
  None,   ///< still running
  Stop,   ///< EOS, a stop id or a stop string
  Length, ///< max_tokens or the context length reached
  Abort,  ///< the client aborted it
  Error,  ///< the request could not be served (see RequestOutput::error)
};
const char *finishReasonName(FinishReason r);

/// What one engine step produced for one request: the new tokens and text
/// since the previous output (streaming), and the end state when finished.
struct RequestOutput {
  RequestId id = -1;
  std::vector<int32_t> newTokenIds;
  /// Text of newTokenIds, held back while it could still be the start of a
  /// stop string or an incomplete character. Empty without a tokenizer.
  std::string newText;
  bool finished = false;
  FinishReason finishReason = FinishReason::None;
  /// The stop string or stop id that ended the request, when one did.
  std::string stopReason;
  /// One line for FinishReason::Error.
  std::string error;
  int32_t numPromptTokens = 0;
  /// Prompt tokens whose KV came from the prefix cache at first scheduling.
  int32_t numCachedTokens = 0;
};

} // namespace qrt::serving

#endif // QOPT_RT_SERVING_REQUEST_H
