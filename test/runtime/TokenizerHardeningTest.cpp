//===- TokenizerHardeningTest.cpp - hostile files, ids and text -----------===//
//
// tokenizer.json files and generated ids come from outside: malformed or
// malicious values must give a clear one-line error or be skipped, never a
// crash, an out-of-bounds access or a huge allocation (the stoi-on-"<0x-1>"
// class of bug seen in other runtimes).
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <climits>

using nlohmann::json;
using qrt::Tokenizer;

namespace {

json minimalBpe() {
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false},
                             {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}},
            {"merges", json::array({"a b"})}}}};
}

/// Loads `text`, expects failure, returns the error message.
std::string loadError(const std::string &text) {
  std::string err;
  auto t = Tokenizer::fromJson(text, "bad.json", &err);
  EXPECT_FALSE(t) << "unexpectedly loaded: " << text.substr(0, 200);
  EXPECT_EQ(err.rfind("bad.json: ", 0), 0u) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  return err;
}

} // namespace

TEST(TokenizerHardening, MalformedJsonIsAnError) {
  for (const char *text :
       {"", "{", "[]", "null", "42", "{\"model\": 5}", "{\"model\": {}}",
        "{\"model\": {\"type\": \"BPE\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}}}",
        "\xFF\xFE{}"})
    loadError(text);
}

TEST(TokenizerHardening, MissingFileIsAnError) {
  std::string err;
  EXPECT_FALSE(Tokenizer::fromFile("/nonexistent/tokenizer.json", &err));
  EXPECT_NE(err.find("/nonexistent/tokenizer.json"), std::string::npos);
  EXPECT_FALSE(Tokenizer::fromFile("/nonexistent", nullptr)); // null error ok
}

TEST(TokenizerHardening, OutOfRangeIdsInFileAreRefused) {
  json j = minimalBpe();
  j["model"]["vocab"]["c"] = -1;
  EXPECT_NE(loadError(j.dump()).find("out of range"), std::string::npos);
  j = minimalBpe();
  j["model"]["vocab"]["c"] = 4000000000u;
  EXPECT_NE(loadError(j.dump()).find("out of range"), std::string::npos);
  j = minimalBpe();
  j["added_tokens"] = {{{"id", -5}, {"content", "<x>"}, {"special", true}}};
  loadError(j.dump());
}

TEST(TokenizerHardening, BadMergesAreRefused) {
  json j = minimalBpe();
  j["model"]["merges"] = json::array({"a c"});
  EXPECT_NE(loadError(j.dump()).find("'c'"), std::string::npos);
  j["model"]["merges"] = json::array({"a b c"});
  loadError(j.dump());
  j["model"]["merges"] = json::array({json::array({"a"})});
  loadError(j.dump());
  j["model"]["merges"] = json::array({json::array({"b", "a"})}); // no "ba"
  loadError(j.dump());
  j["model"]["merges"] = json::array({json::array({"a", "b"})}); // tuple form
  std::string err;
  EXPECT_TRUE(Tokenizer::fromJson(j.dump(), "ok.json", &err)) << err;
}

TEST(TokenizerHardening, UnsupportedComponentsAreNamed) {
  struct Case {
    const char *key;
    json value;
    const char *name;
  };
  std::vector<Case> cases = {
      {"normalizer", {{"type", "Precompiled"}}, "Precompiled"},
      {"pre_tokenizer", {{"type", "UnicodeScripts"}}, "UnicodeScripts"},
      {"decoder", {{"type", "CTC"}}, "CTC"},
      {"post_processor", {{"type", "Mystery"}}, "Mystery"},
  };
  for (const Case &c : cases) {
    json j = minimalBpe();
    j[c.key] = c.value;
    EXPECT_NE(loadError(j.dump()).find(c.name), std::string::npos) << c.name;
  }
  json j = minimalBpe();
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(loadError(j.dump()).find("WordPiece"), std::string::npos);
  j = minimalBpe();
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(loadError(j.dump()).find("dropout"), std::string::npos);
  j = minimalBpe();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"}};
  EXPECT_NE(loadError(j.dump()).find("regex"), std::string::npos);
}

TEST(TokenizerHardening, DeepNestingIsRefused) {
  std::string deep(100000, '[');
  loadError(deep);
  json j = minimalBpe();
  json seq = {{"type", "NFC"}};
  for (int i = 0; i < 300; ++i)
    seq = {{"type", "Sequence"}, {"normalizers", {seq}}};
  j["normalizer"] = seq;
  EXPECT_NE(loadError(j.dump()).find("nests"), std::string::npos);
}

TEST(TokenizerHardening, BadByteTokensInVocab) {
  // Byte-fallback tokens with malformed hex must neither be parsed into an
  // out-of-range byte nor be used for encoding.
  json j = minimalBpe();
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  j["model"]["byte_fallback"] = true;
  j["model"]["unk_token"] = "<unk>";
  json &v = j["model"]["vocab"];
  v["<unk>"] = 3;
  v["<0x-1>"] = 4;
  v["<0xZZ>"] = 5;
  v["<0x100>"] = 6;
  v["<0x>"] = 7;
  v["<0x4"] = 8;
  v["<0x41>"] = 9; // 'A', the one valid byte token
  std::string err;
  auto t = Tokenizer::fromJson(j.dump(), "bytes.json", &err);
  ASSERT_TRUE(t) << err;
  EXPECT_EQ(t->decode({4, 5, 6, 7, 8}), "<0x-1><0xZZ><0x100><0x><0x4");
  EXPECT_EQ(t->decode({9}), "A");
  EXPECT_EQ(t->encode("A"), std::vector<int32_t>{9});
  // 'Z' has no byte token: the whole character falls back to <unk>.
  EXPECT_EQ(t->encode("Z"), std::vector<int32_t>{3});
  for (int32_t id = -3; id < 12; ++id)
    EXPECT_TRUE(qrt::test::isValidUtf8(t->tokenBytes(id)) ||
                t->tokenBytes(id).size() == 1);
}

TEST(TokenizerHardening, OutOfRangeIdsInDecodeAreSkipped) {
  std::string err;
  auto t = Tokenizer::fromJson(minimalBpe().dump(), "m.json", &err);
  ASSERT_TRUE(t) << err;
  EXPECT_EQ(t->decode({-1, INT32_MIN, INT32_MAX, t->vocabSize(), 0, 1}), "ab");
  EXPECT_EQ(t->decode({}), "");
  EXPECT_EQ(t->tokenBytes(-7), "");
  EXPECT_EQ(t->tokenBytes(INT32_MAX), "");
  EXPECT_FALSE(t->idToToken(-1));
  EXPECT_FALSE(t->isSpecial(INT32_MIN));
  qrt::StreamDecoder stream(*t);
  EXPECT_EQ(stream.push(-1) + stream.push(0) + stream.push(99) + stream.flush(),
            "a");
}

TEST(TokenizerHardening, RandomIdsDecodeToValidUtf8) {
  std::string path =
      qrt::test::sharedDir() + "/models/austen-llama-7m/tokenizer.json";
  if (!qrt::test::fileExists(path))
    GTEST_SKIP() << "shared data not found";
  auto t = Tokenizer::fromFile(path, nullptr);
  ASSERT_TRUE(t);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> id(-10, t->vocabSize() + 10);
  for (int i = 0; i < 500; ++i) {
    std::vector<int32_t> ids(size_t(rng() % 20));
    for (int32_t &x : ids)
      x = id(rng);
    EXPECT_TRUE(qrt::test::isValidUtf8(t->decode(ids)));
  }
}

TEST(TokenizerHardening, InvalidUtf8InputIsRepaired) {
  std::string path =
      qrt::test::sharedDir() + "/models/austen-llama-7m/tokenizer.json";
  std::string err;
  auto t = qrt::test::fileExists(path)
               ? Tokenizer::fromFile(path, &err)
               : Tokenizer::fromJson(minimalBpe().dump(), "m.json", &err);
  ASSERT_TRUE(t) << err;
  const std::string fffd = "\xEF\xBF\xBD";
  // Each maximal ill-formed subsequence becomes one U+FFFD.
  EXPECT_EQ(t->encode("a\xFF" "b"), t->encode("a" + fffd + "b"));
  EXPECT_EQ(t->encode("\xE2\x82" "x"), t->encode(fffd + "x"));
  EXPECT_EQ(t->encode("\xED\xA0\x80"), t->encode(fffd + fffd + fffd));
  EXPECT_EQ(t->encode("\xF0\x9F\x98"), t->encode(fffd));
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    std::string s(size_t(rng() % 64), '\0');
    for (char &c : s)
      c = char(rng());
    std::vector<int32_t> ids = t->encode(s);
    EXPECT_TRUE(qrt::test::isValidUtf8(t->decode(ids)));
  }
}

TEST(TokenizerHardening, MutatedFilesNeverCrash) {
  std::string path =
      qrt::test::sharedDir() + "/models/austen-llama-7m/tokenizer.json";
  std::string base = qrt::test::fileExists(path) ? qrt::test::readFile(path)
                                                 : minimalBpe().dump();
  std::mt19937 rng(2024);
  int loaded = 0;
  for (int i = 0; i < 60; ++i) {
    std::string text = base;
    switch (i % 3) {
    case 0: // truncate
      text.resize(rng() % text.size());
      break;
    case 1: // flip bytes
      for (int k = 0; k < 5; ++k)
        text[rng() % text.size()] = char(rng());
      break;
    default: { // swap a digit run for a huge or negative number
      size_t p = text.find_first_of("0123456789", rng() % text.size());
      if (p != std::string::npos)
        text.insert(p, (rng() & 1) ? "-" : "99999999999");
    }
    }
    std::string err;
    auto t = Tokenizer::fromJson(text, "mut.json", &err);
    if (t) {
      ++loaded;
      std::vector<int32_t> ids = t->encode("Mutation test <s> \xC3\xA9t\xC3\xA9");
      (void)t->decode(ids);
    } else {
      EXPECT_FALSE(err.empty());
    }
  }
  SUCCEED() << loaded << " of 60 mutated files still loaded";
}
