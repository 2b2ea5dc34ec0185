//===- CalibrationTestUtil.h - helpers of the calibration tests -*- C++ -*-===//
//
// A byte tokenizer (a byte-level BPE with the 256 byte tokens and no
// merges: the ids of a text are its bytes, an independent reference for
// the token stream), a scratch directory, and small random decoders.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_TEST_QUANT_CALIBRATIONTESTUTIL_H
#define QOPT_TEST_QUANT_CALIBRATIONTESTUTIL_H

#include "qopt-rt/tokenizer.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <fstream>
#include <memory>
#include <random>
#include <string>

namespace calibtest {

/// GPT-2's bytes_to_unicode: the character byte b stands for, UTF-8.
inline std::string byteChar(int b) {
  auto printable = [](int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
  };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      n += !printable(c);
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

/// tokenizer.json text of the byte tokenizer (id = byte value).
inline std::string byteTokenizerJson() {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string c = byteChar(b);
    if (c == "\"" || c == "\\")
      c = "\\" + c;
    vocab += (b ? "," : "") + std::string("\"") + c + "\":" + std::to_string(b);
  }
  return R"({"version":"1.0","added_tokens":[],"normalizer":null,)"
         R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,)"
         R"("trim_offsets":true,"use_regex":true},"post_processor":null,)"
         R"("decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{)" +
         vocab + R"(},"merges":[]}})";
}

inline std::unique_ptr<qrt::Tokenizer> byteTokenizer() {
  std::string err;
  return qrt::Tokenizer::fromJson(byteTokenizerJson(), "bytes.json", &err);
}

/// A fresh directory, removed with its files at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    llvm::SmallString<128> p;
    llvm::sys::fs::createUniqueDirectory("qopt-calib-test", p);
    path = std::string(p);
  }
  ~TempDir() { llvm::sys::fs::remove_directories(path); }
  std::string file(const std::string &name, const std::string &contents) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << contents;
    return p;
  }
};

/// Pseudo-English text of about `bytes` bytes (words from a small list).
inline std::string randomText(size_t bytes, uint32_t seed) {
  static const char *words[] = {"the", "of", "and", "a", "to", "in", "is", "you", "that",
                                "it", "he", "was", "for", "on", "are", "as", "with", "his",
                                "they", "at", "be", "this", "have", "from", "or", "one",
                                "had", "by", "word", "but", "not", "what", "all", "were"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    s += words[rng() % (sizeof(words) / sizeof(words[0]))];
    s += (rng() % 12 == 0) ? ".\n" : " ";
  }
  return s;
}

} // namespace calibtest

#endif
