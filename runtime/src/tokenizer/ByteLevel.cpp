//===- ByteLevel.cpp - GPT-2 byte <-> printable character table ----------===//
#include "ByteLevel.h"

#include "Utf8.h"

namespace qrt::tok::bytelevel {

namespace {
bool printable(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
         (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<std::string, 256> toChar;
  std::array<int16_t, 512> toByte; // every mapped code point is < 0x144
  Tables() {
    toByte.fill(-1);
    uint32_t nextExtra = 0x100;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = printable(b) ? uint32_t(b) : nextExtra++;
      utf8::append(toChar[b], cp);
      toByte[cp] = int16_t(b);
    }
  }
};

const Tables &tables() {
  static const Tables t;
  return t;
}
} // namespace

const std::array<std::string, 256> &byteToChar() { return tables().toChar; }

int charToByte(uint32_t cp) {
  return cp < 512 ? tables().toByte[cp] : -1;
}

void encode(std::string_view bytes, std::string &out) {
  const auto &t = tables().toChar;
  for (unsigned char b : bytes)
    out += t[b];
}

bool decode(std::string_view token, std::string &out) {
  size_t mark = out.size();
  for (size_t i = 0; i < token.size();) {
    int b = charToByte(utf8::next(token, i));
    if (b < 0) {
      out.resize(mark);
      return false;
    }
    out.push_back(static_cast<char>(b));
  }
  return true;
}

} // namespace qrt::tok::bytelevel
