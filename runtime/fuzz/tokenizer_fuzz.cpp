//===- tokenizer_fuzz.cpp - libFuzzer target for qrt::Tokenizer -----------===//
//
// Build: cmake -S runtime -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++
//        -DQOPT_RUNTIME_FUZZ=ON && ninja -C build-fuzz tokenizer_fuzz
// The first input byte picks a mode: the rest is either a whole
// tokenizer.json (loaded, then used), or text to encode and ids to decode
// with a fixed tokenizer that has byte fallback, Metaspace and added tokens.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

const char *kFixedTokenizer = R"json({
 "version": "1.0",
 "added_tokens": [
  {"id": 0, "content": "<unk>", "special": true, "normalized": false},
  {"id": 1, "content": "<s>", "special": true, "normalized": false},
  {"id": 9, "content": "<m>", "special": false, "normalized": false,
   "lstrip": true, "rstrip": true, "single_word": true},
  {"id": 10, "content": "ab c", "special": false, "normalized": true}],
 "normalizer": {"type": "Sequence", "normalizers": [
  {"type": "NFKC"},
  {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}]},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s)|\\p{L}+|\\p{N}{1,3}|\\s+(?!\\S)"},
   "behavior": "MergedWithNext", "invert": false},
  {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
   "split": true}]},
 "post_processor": {"type": "TemplateProcessing",
  "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
             {"Sequence": {"id": "A", "type_id": 0}}],
  "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1],
  "tokens": ["<s>"]}}},
 "decoder": {"type": "Sequence", "decoders": [
  {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
  {"type": "ByteFallback"}, {"type": "Fuse"},
  {"type": "Strip", "content": " ", "start": 1, "stop": 1}]},
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "fuse_unk": true, "vocab": {"<unk>": 0, "<s>": 1, "\u2581": 2, "a": 3,
  "b": 4, "ab": 5, "<0x41>": 6, "<0xC3>": 7, "<0x-1>": 8, "<0xA9>": 11},
  "merges": [["a", "b"]]}})json";

void exercise(const qrt::Tokenizer &tok, const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  std::vector<int32_t> ids = tok.encode(text, size % 2 == 0);
  (void)tok.decode(ids, true);
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty())
    std::memcpy(raw.data(), data, raw.size() * 4);
  (void)tok.decode(raw, false);
  qrt::StreamDecoder stream(tok);
  for (int32_t id : raw)
    (void)stream.push(id);
  (void)stream.flush();
  for (size_t i = 0; i < raw.size() && i < 8; ++i) {
    (void)tok.tokenBytes(raw[i]);
    (void)tok.idToToken(raw[i]);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] & 1) {
    std::string json(reinterpret_cast<const char *>(data + 1), size - 1);
    std::string err;
    if (auto tok = qrt::Tokenizer::fromJson(json, "fuzz.json", &err))
      exercise(*tok, data, size);
    return 0;
  }
  static const auto fixed =
      qrt::Tokenizer::fromJson(kFixedTokenizer, "fixed", nullptr);
  if (fixed)
    exercise(*fixed, data + 1, size - 1);
  return 0;
}
