//===- TestUtil.h - helpers shared by the runtime tokenizer tests -*- C++ -*-===//
#ifndef QOPT_TEST_RUNTIME_TESTUTIL_H
#define QOPT_TEST_RUNTIME_TESTUTIL_H

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace qrt::test {

/// Where the read-only shared models and texts live (set by CMake).
inline std::string sharedDir() { return QOPT_SHARED_DIR; }

inline bool fileExists(const std::string &p) { return std::ifstream(p).good(); }

inline std::string readFile(const std::string &p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

/// Independent UTF-8 validity check (Unicode Table 3-7) for test oracles.
inline bool isValidUtf8(const std::string &s) {
  size_t i = 0, n = s.size();
  auto cont = [&](size_t k, unsigned lo, unsigned hi) {
    return k < n && (unsigned char)s[k] >= lo && (unsigned char)s[k] <= hi;
  };
  while (i < n) {
    unsigned b = (unsigned char)s[i];
    if (b < 0x80) { i += 1; continue; }
    if (b >= 0xC2 && b <= 0xDF && cont(i + 1, 0x80, 0xBF)) { i += 2; continue; }
    if (b >= 0xE0 && b <= 0xEF) {
      unsigned lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
      if (cont(i + 1, lo, hi) && cont(i + 2, 0x80, 0xBF)) { i += 3; continue; }
      return false;
    }
    if (b >= 0xF0 && b <= 0xF4) {
      unsigned lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
      if (cont(i + 1, lo, hi) && cont(i + 2, 0x80, 0xBF) &&
          cont(i + 3, 0x80, 0xBF)) { i += 4; continue; }
    }
    return false;
  }
  return true;
}

/// A random valid UTF-8 string mixing ASCII words, whitespace of several
/// kinds, Latin-1, CJK, emoji and arbitrary scalar values.
inline std::string randomUtf8(std::mt19937 &rng, size_t maxChars) {
  std::uniform_int_distribution<size_t> lenDist(0, maxChars);
  std::uniform_int_distribution<int> kind(0, 9);
  static const uint32_t spaces[] = {' ', '\t', '\n', '\r', 0xA0, 0x3000,
                                    0x85, 0x2028};
  std::string s;
  size_t n = lenDist(rng);
  for (size_t i = 0; i < n; ++i) {
    uint32_t cp;
    switch (kind(rng)) {
    case 0: case 1: case 2:
      cp = std::uniform_int_distribution<uint32_t>('a', 'z')(rng);
      break;
    case 3:
      cp = std::uniform_int_distribution<uint32_t>(0x20, 0x7E)(rng);
      break;
    case 4:
      cp = spaces[std::uniform_int_distribution<int>(0, 7)(rng)];
      break;
    case 5:
      cp = std::uniform_int_distribution<uint32_t>(0xA1, 0x17F)(rng);
      break;
    case 6:
      cp = std::uniform_int_distribution<uint32_t>(0x4E00, 0x9FFF)(rng);
      break;
    case 7:
      cp = std::uniform_int_distribution<uint32_t>(0x1F600, 0x1F64F)(rng);
      break;
    default:
      do
        cp = std::uniform_int_distribution<uint32_t>(1, 0x10FFFF)(rng);
      while (cp >= 0xD800 && cp <= 0xDFFF);
    }
    appendUtf8(s, cp);
  }
  return s;
}

} // namespace qrt::test

#endif // QOPT_TEST_RUNTIME_TESTUTIL_H
