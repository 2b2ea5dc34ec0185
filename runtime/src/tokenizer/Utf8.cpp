//===- Utf8.cpp - UTF-8 helpers for the tokenizer -------------------------===//
#include "Utf8.h"

namespace qrt::tok::utf8 {

// Table 3-7 of the Unicode standard: the lead byte fixes how many
// continuation bytes follow and the allowed range of the first of them
// (which is what excludes overlongs, surrogates and values past U+10FFFF).
size_t sequenceLength(std::string_view s, size_t i, size_t *badLen) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b = at(i);
  if (b < 0x80)
    return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0)
      lo = 0xA0;
    else if (b == 0xED)
      hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0)
      lo = 0x90;
    else if (b == 0xF4)
      hi = 0x8F;
  } else {
    if (badLen)
      *badLen = 1;
    return 0;
  }
  size_t got = 0;
  while (got < need && i + 1 + got < s.size()) {
    unsigned char c = at(i + 1 + got);
    unsigned char l = got == 0 ? lo : 0x80, h = got == 0 ? hi : 0xBF;
    if (c < l || c > h)
      break;
    ++got;
  }
  if (got == need)
    return need + 1;
  if (badLen)
    *badLen = got + 1;
  return 0;
}

bool isValid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = sequenceLength(s, i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

std::string repair(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t bad = 0;
    size_t n = sequenceLength(s, i, &bad);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.append(kReplacement);
      i += bad;
    }
  }
  return out;
}

size_t completePrefixLength(std::string_view s) {
  // Only the last (at most 3) bytes can belong to an unfinished character.
  size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = s.size(); i-- > start;) {
    auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) == 0x80)
      continue; // continuation byte: keep looking for its lead
    if (b < 0x80)
      return s.size();
    size_t bad = 0;
    if (sequenceLength(s, i, &bad) == 0 && i + bad == s.size() &&
        bad < charLength(b))
      return i; // a valid start that merely ran out of bytes
    return s.size();
  }
  return s.size();
}

void append(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool isWhiteSpace(uint32_t cp) {
  if (cp <= 0x20)
    return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
  case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
  case 0x202F: case 0x205F: case 0x3000:
    return true;
  default:
    return cp >= 0x2000 && cp <= 0x200A;
  }
}

} // namespace qrt::tok::utf8
