//===- TokenizerTest.cpp - behaviour of qrt::Tokenizer --------------------===//
//
// Small hand-built tokenizers check each pipeline rule on its own; the
// shared austen-llama-7m tokenizer checks a real byte-level BPE end to end.
// Id-for-id agreement with HF tokenizers is tested separately by
// compare_tokenizers.py.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

using nlohmann::json;
using qrt::Tokenizer;

namespace {

const char *kSpace = "\xE2\x96\x81"; // U+2581, SentencePiece's space

std::unique_ptr<Tokenizer> load(const json &j) {
  std::string err;
  auto t = Tokenizer::fromJson(j.dump(), "test.json", &err);
  EXPECT_TRUE(t) << err;
  return t;
}

/// A Llama-2-like tokenizer: byte fallback, ▁ for spaces, <s> template.
json llama2Like(bool byteFallback = true, bool fuseUnk = false) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int id = 3;
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = id++;
  }
  for (std::string t : {std::string(kSpace), std::string("a"),
                        std::string("b"), std::string("c"),
                        std::string(kSpace) + "a", std::string("ab"),
                        std::string(kSpace) + "ab"})
    vocab[t] = id++;
  json merges = json::array({std::string(kSpace) + " a", "a b",
                             std::string(kSpace) + "a b"});
  auto special = [](const char *c, int i) -> json {
    return json{{"id", i}, {"content", c}, {"single_word", false},
                {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                {"special", true}};
  };
  return {
      {"version", "1.0"},
      {"added_tokens", {special("<unk>", 0), special("<s>", 1),
                        special("</s>", 2)}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", kSpace}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}},
           {"content", kSpace}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}},
           {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", fuseUnk},
        {"byte_fallback", byteFallback}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges}}}};
}

int32_t idOf(const Tokenizer &t, const std::string &tok) {
  auto id = t.tokenToId(tok);
  EXPECT_TRUE(id.has_value()) << "no token " << tok;
  return id.value_or(-1);
}

std::unique_ptr<Tokenizer> loadShared() {
  std::string path = qrt::test::sharedDir() +
                     "/models/austen-llama-7m/tokenizer.json";
  if (!qrt::test::fileExists(path))
    return nullptr;
  std::string err;
  auto t = Tokenizer::fromFile(path, &err);
  EXPECT_TRUE(t) << err;
  return t;
}

} // namespace

TEST(TokenizerByteFallback, MergesFollowRanks) {
  auto t = load(llama2Like());
  ASSERT_TRUE(t);
  std::string sp = kSpace;
  // "ab" -> "▁ab": ▁+a first (rank 0), then ▁a+b (rank 2).
  EXPECT_EQ(t->encode("ab"), std::vector<int32_t>{idOf(*t, sp + "ab")});
  EXPECT_EQ(t->encode("ab a"),
            (std::vector<int32_t>{idOf(*t, sp + "ab"), idOf(*t, sp + "a")}));
  EXPECT_EQ(t->encode("ab", true),
            (std::vector<int32_t>{*t->bosId(), idOf(*t, sp + "ab")}));
  EXPECT_EQ(t->bosId(), t->tokenToId("<s>"));
  EXPECT_EQ(t->eosId(), t->tokenToId("</s>"));
}

TEST(TokenizerByteFallback, UnknownCharactersBecomeBytes) {
  auto t = load(llama2Like());
  ASSERT_TRUE(t);
  std::vector<int32_t> want = {idOf(*t, kSpace), idOf(*t, "<0xE2>"),
                               idOf(*t, "<0x82>"), idOf(*t, "<0xAC>")};
  EXPECT_EQ(t->encode("\xE2\x82\xAC"), want); // €
  EXPECT_EQ(t->decode(want), "\xE2\x82\xAC");
  // A lone continuation byte decodes to U+FFFD, never to invalid UTF-8.
  EXPECT_EQ(t->decode({idOf(*t, "<0x82>")}), "\xEF\xBF\xBD");
  EXPECT_EQ(t->tokenBytes(idOf(*t, "<0xE2>")), "\xE2");
}

TEST(TokenizerByteFallback, UnkWithAndWithoutFusing) {
  std::string sp = kSpace;
  auto plain = load(llama2Like(false, false));
  auto fused = load(llama2Like(false, true));
  ASSERT_TRUE(plain && fused);
  int32_t unk = idOf(*plain, "<unk>");
  EXPECT_EQ(plain->encode("\xE2\x82\xAC\xE2\x82\xAC" "c"),
            (std::vector<int32_t>{idOf(*plain, sp), unk, unk,
                                  idOf(*plain, "c")}));
  EXPECT_EQ(fused->encode("\xE2\x82\xAC\xE2\x82\xAC" "c"),
            (std::vector<int32_t>{idOf(*fused, sp), unk, idOf(*fused, "c")}));
}

TEST(TokenizerByteFallback, DecodeStripsOnlyTheAddedSpace) {
  auto t = load(llama2Like());
  ASSERT_TRUE(t);
  for (std::string s : {"ab", " ab", "a  b ", "  ", "c\xE2\x82\xAC c"})
    EXPECT_EQ(t->decode(t->encode(s)), s) << s;
  // Strip acts on the fused text, whose first character is now '<'.
  EXPECT_EQ(t->decode(t->encode("ab", true)), "<s> ab");
  EXPECT_EQ(t->decode(t->encode("ab", true), true), "ab");
}

TEST(TokenizerByteFallback, RandomRoundTrip) {
  auto t = load(llama2Like());
  ASSERT_TRUE(t);
  std::mt19937 rng(7);
  for (int i = 0; i < 500; ++i) {
    std::string s = qrt::test::randomUtf8(rng, 40);
    if (s.find(kSpace) != std::string::npos)
      continue; // a literal ▁ decodes as a space by design
    EXPECT_EQ(t->decode(t->encode(s)), s);
  }
}

TEST(TokenizerMetaspace, PrependSchemeFirstAndSplit) {
  json j = llama2Like();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace},
                        {"prepend_scheme", "first"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", kSpace},
                  {"prepend_scheme", "first"}, {"split", true}};
  auto t = load(j);
  ASSERT_TRUE(t);
  std::string sp = kSpace;
  EXPECT_EQ(t->encode("ab ab"),
            (std::vector<int32_t>{idOf(*t, sp + "ab"), idOf(*t, sp + "ab")}));
  // After a special token the piece does not start the input: no ▁ added.
  EXPECT_EQ(t->encode("<s>ab"),
            (std::vector<int32_t>{idOf(*t, "<s>"), idOf(*t, "ab")}));
  EXPECT_EQ(t->decode(t->encode("ab ab")), "ab ab");
}

TEST(TokenizerBpe, IgnoreMergesUsesWholeWords) {
  json j = llama2Like();
  j["normalizer"] = nullptr;
  j["decoder"] = nullptr;
  j["model"]["vocab"]["cab"] = 400; // reachable by no merge
  auto plain = load(j);
  j["model"]["ignore_merges"] = true;
  auto ignoring = load(j);
  ASSERT_TRUE(plain && ignoring);
  EXPECT_EQ(ignoring->encode("cab"), std::vector<int32_t>{400});
  EXPECT_EQ(plain->encode("cab"),
            (std::vector<int32_t>{idOf(*plain, "c"), idOf(*plain, "ab")}));
}

TEST(TokenizerAddedTokens, StripAndSingleWord) {
  json j = llama2Like();
  j["normalizer"] = nullptr;
  j["decoder"] = nullptr;
  j["added_tokens"].push_back({{"id", 500}, {"content", "<m>"},
                               {"single_word", false}, {"lstrip", true},
                               {"rstrip", true}, {"normalized", false},
                               {"special", false}});
  j["added_tokens"].push_back({{"id", 501}, {"content", "ab"},
                               {"single_word", true}, {"lstrip", false},
                               {"rstrip", false}, {"normalized", false},
                               {"special", false}});
  auto t = load(j);
  ASSERT_TRUE(t);
  int32_t m = idOf(*t, "<m>");
  int32_t ab = idOf(*t, "ab");
  EXPECT_EQ(m, 259 + 7); // next id after the 266-entry vocabulary
  // Spaces around <m> are absorbed into it.
  EXPECT_EQ(t->encode("c  <m>  c"),
            (std::vector<int32_t>{idOf(*t, "c"), m, idOf(*t, "c")}));
  // "ab" inside a word is not the single-word added token.
  EXPECT_EQ(t->encode("ab"), std::vector<int32_t>{ab});
  std::vector<int32_t> inWord = t->encode("cab");
  EXPECT_EQ(inWord, (std::vector<int32_t>{idOf(*t, "c"), ab}))
      << "the model's own 'ab' (same id) still applies";
  EXPECT_FALSE(t->isSpecial(m));
  EXPECT_TRUE(t->isSpecial(idOf(*t, "<s>")));
}

TEST(TokenizerPostProcess, TruncationAndPadding) {
  json j = llama2Like();
  j["truncation"] = {{"direction", "Right"}, {"max_length", 3},
                     {"strategy", "LongestFirst"}, {"stride", 0}};
  j["padding"] = {{"strategy", {{"Fixed", 6}}}, {"direction", "Left"},
                  {"pad_to_multiple_of", nullptr}, {"pad_id", 2},
                  {"pad_type_id", 0}, {"pad_token", "</s>"}};
  auto t = load(j);
  ASSERT_TRUE(t);
  std::vector<int32_t> ids = t->encode("ab ab ab ab", true);
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 3),
            (std::vector<int32_t>{2, 2, 2}));
  EXPECT_EQ(ids[3], *t->bosId());
}

TEST(TokenizerShared, ByteLevelBasics) {
  auto t = loadShared();
  if (!t)
    GTEST_SKIP() << "shared data not found at " << qrt::test::sharedDir();
  std::vector<int32_t> ids = t->encode("Hello world");
  std::string joined;
  for (int32_t id : ids) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, t->vocabSize());
    joined += *t->idToToken(id);
  }
  EXPECT_EQ(joined, "Hello\xC4\xA0world"); // Ġ stands for the space
  EXPECT_EQ(t->decode(ids), "Hello world");
  EXPECT_EQ(t->vocabSize(), 4096);
  EXPECT_EQ(t->bosId(), t->tokenToId("<s>"));
  EXPECT_EQ(t->eosId(), t->tokenToId("</s>"));
  std::vector<int32_t> withBos = t->encode("Hello world", true);
  ASSERT_EQ(withBos.size(), ids.size() + 1);
  EXPECT_EQ(withBos[0], *t->bosId());
  EXPECT_EQ(t->tokenBytes(idOf(*t, "\xC4\xA0the")), " the");
}

TEST(TokenizerShared, SpecialTokensInText) {
  auto t = loadShared();
  if (!t)
    GTEST_SKIP() << "shared data not found";
  int32_t bos = *t->bosId();
  std::vector<int32_t> ids = t->encode("a<s>b");
  std::vector<int32_t> a = t->encode("a"), b = t->encode("b");
  std::vector<int32_t> want = a;
  want.push_back(bos);
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(ids, want);
  EXPECT_EQ(t->decode(ids), "a<s>b");
  EXPECT_EQ(t->decode(ids, true), "ab");
}

TEST(TokenizerShared, RandomUtf8RoundTrip) {
  auto t = loadShared();
  if (!t)
    GTEST_SKIP() << "shared data not found";
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000; ++i) {
    std::string s = qrt::test::randomUtf8(rng, 60);
    if (s.find("<s>") != std::string::npos ||
        s.find("</s>") != std::string::npos)
      continue;
    ASSERT_EQ(t->decode(t->encode(s)), s) << "case " << i;
  }
}

TEST(TokenizerShared, StreamingMatchesDecode) {
  auto t = loadShared();
  auto f = load(llama2Like());
  ASSERT_TRUE(f);
  std::mt19937 rng(99);
  for (const Tokenizer *tok : {t.get(), f.get()}) {
    if (!tok)
      continue;
    qrt::StreamDecoder stream(*tok);
    for (int i = 0; i < 300; ++i) {
      std::vector<int32_t> ids = tok->encode(qrt::test::randomUtf8(rng, 30));
      std::string streamed;
      for (int32_t id : ids) {
        std::string piece = stream.push(id);
        // Every piece is complete UTF-8 (no split characters).
        EXPECT_TRUE(qrt::test::isValidUtf8(piece));
        streamed += piece;
      }
      streamed += stream.flush();
      EXPECT_EQ(streamed, tok->decode(ids));
    }
  }
}

TEST(TokenizerShared, ConcurrentEncodeAgrees) {
  auto t = loadShared();
  if (!t)
    GTEST_SKIP() << "shared data not found";
  std::mt19937 rng(5);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back(qrt::test::randomUtf8(rng, 50));
  std::vector<std::vector<int32_t>> expect;
  for (const auto &s : texts)
    expect.push_back(t->encode(s));
  auto worker = [&](int *failures) {
    for (size_t i = 0; i < texts.size(); ++i)
      if (t->encode(texts[i]) != expect[i])
        ++*failures;
  };
  int f1 = 0, f2 = 0;
  std::thread a(worker, &f1), b(worker, &f2);
  a.join();
  b.join();
  EXPECT_EQ(f1 + f2, 0);
}
