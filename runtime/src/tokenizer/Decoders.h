//===- Decoders.h - tokenizer.json "decoder" components --------*- C++ -*-===//
#ifndef QOPT_RT_TOKENIZER_DECODERS_H
#define QOPT_RT_TOKENIZER_DECODERS_H

#include "Json.h"

#include <memory>
#include <string>
#include <vector>

namespace qrt::tok {

/// Turns token strings back into text, as HF's Decoder::decode_chain: each
/// stage maps the list of token strings to a new list; the final list is
/// concatenated.
class Decoder {
public:
  virtual ~Decoder() = default;
  /// Rewrites `tokens` in place. Output strings may hold raw bytes only
  /// until a stage that repairs UTF-8 (the caller repairs the final text).
  virtual void decodeChain(std::vector<std::string> &tokens) const = 0;
  /// The bytes a single token contributes in the middle of a sequence,
  /// without sequence-level rules (leading-space stripping) or UTF-8 repair.
  virtual void rawPiece(std::string &token) const = 0;
};

/// Builds the decoder described by `j`; nullptr for JSON null. Throws
/// LoadError naming the type for unsupported components.
std::unique_ptr<Decoder> makeDecoder(const Json &j, const std::string &path);

/// Parses a byte-fallback token "<0xNN>" the way HF's ByteFallback decoder
/// does (6 bytes, two hex digits or '+' and one digit); -1 if it is not one.
/// Never throws and never reads outside `token`.
int parseByteToken(const std::string &token);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_DECODERS_H
