//===- Utf8.h - UTF-8 helpers for the tokenizer -----------------*- C++ -*-===//
//
// Decoding, encoding and repair of UTF-8. Everything after input repair
// works on valid UTF-8, so the fast decoder here does not re-validate.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_UTF8_H
#define QOPT_RT_TOKENIZER_UTF8_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qrt::tok::utf8 {

/// Length of the well-formed sequence starting at s[i], or 0 when s[i] does
/// not start one. On 0, *badLen (if given) receives the length of the
/// maximal ill-formed subpart (>= 1) that the Unicode "substitution of
/// maximal subparts" practice replaces by one U+FFFD.
size_t sequenceLength(std::string_view s, size_t i, size_t *badLen = nullptr);

/// True when `s` is entirely well-formed UTF-8.
bool isValid(std::string_view s);

/// Replaces each maximal ill-formed subpart by U+FFFD, exactly like Rust's
/// String::from_utf8_lossy and Python's decode(errors="replace").
std::string repair(std::string_view s);

/// Length of the longest prefix of `s` that ends on a character boundary,
/// treating a trailing truncated-but-so-far-valid sequence as incomplete.
size_t completePrefixLength(std::string_view s);

/// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
inline uint32_t next(std::string_view s, size_t &i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  uint32_t cp = b & (0x3F >> extra);
  ++i;
  for (int k = 0; k < extra && i < s.size(); ++k, ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
  return cp;
}

/// Byte length of the character whose first byte is `lead` (valid UTF-8).
inline size_t charLength(unsigned char lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
}

/// Appends the UTF-8 encoding of `cp` (must be a scalar value).
void append(std::string &out, uint32_t cp);

/// Unicode White_Space, which is what Rust's char::is_whitespace and the
/// `\s` of Rust regex and Oniguruma test.
bool isWhiteSpace(uint32_t cp);

/// The U+FFFD replacement character in UTF-8.
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

} // namespace qrt::tok::utf8

#endif // QOPT_RT_TOKENIZER_UTF8_H
