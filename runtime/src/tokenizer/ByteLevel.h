//===- ByteLevel.h - GPT-2 byte <-> printable character table --*- C++ -*-===//
//
// Byte-level BPE works on bytes, but vocabularies store tokens as text: each
// byte is shown as a printable character (printable Latin-1 bytes as
// themselves, the other 68 bytes as U+0100 onwards, so space is 'Ġ').
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_BYTELEVEL_H
#define QOPT_RT_TOKENIZER_BYTELEVEL_H

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qrt::tok::bytelevel {

/// UTF-8 text of the character standing for each byte.
const std::array<std::string, 256> &byteToChar();

/// The byte a character stands for, or -1 when it stands for none.
int charToByte(uint32_t cp);

/// Appends the characters standing for each byte of `bytes`.
void encode(std::string_view bytes, std::string &out);

/// Maps a token's characters back to bytes; false (out untouched beyond its
/// original size) when some character stands for no byte.
bool decode(std::string_view token, std::string &out);

} // namespace qrt::tok::bytelevel

#endif // QOPT_RT_TOKENIZER_BYTELEVEL_H
