//===- StopCheckerTest.cpp - EOS, stop strings, max tokens, streamed text -===//
//
// Uses a tiny byte-level BPE tokenizer: one token per letter, a space token,
// and two tokens that each hold one byte of "é" (so characters split across
// tokens). The oracle for stop strings is the tokenizer's own decode() of the
// ids, searched with std::string::find.
//
//===----------------------------------------------------------------------===//
#include "FakeModel.h"

#include "qopt-rt/serving/Engine.h"
#include "qopt-rt/serving/StopChecker.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

using namespace qrt::serving;
using nlohmann::json;

namespace {

constexpr int32_t kSpace = 26, kE1 = 27, kE2 = 28, kEos = 29, kVocab = 30;

std::unique_ptr<qrt::Tokenizer> tinyTokenizer() {
  json vocab = json::object();
  for (int i = 0; i < 26; ++i)
    vocab[std::string(1, char('a' + i))] = i;
  vocab["\xC4\xA0"] = kSpace; // "Ġ": byte-level space
  vocab["\xC3\x83"] = kE1;    // "Ã": byte 0xC3
  vocab["\xC2\xA9"] = kE2;    // "©": byte 0xA9
  vocab["</s>"] = kEos;
  json j = {{"version", "1.0"},
            {"added_tokens",
             json::array({{{"id", kEos},
                           {"content", "</s>"},
                           {"single_word", false},
                           {"lstrip", false},
                           {"rstrip", false},
                           {"normalized", false},
                           {"special", true}}})},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model",
             {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  std::string err;
  auto t = qrt::Tokenizer::fromJson(j.dump(), "tiny.json", &err);
  EXPECT_TRUE(t) << err;
  return t;
}

std::vector<int32_t> ids(const std::string &s) {
  std::vector<int32_t> out;
  for (char c : s)
    out.push_back(c == ' ' ? kSpace : int32_t(c - 'a'));
  return out;
}

bool validUtf8Piece(const std::string &s) {
  // Every piece must start at a character boundary and end complete.
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
             : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += n;
  }
  return true;
}

struct Fed {
  std::string streamed;
  FinishReason reason = FinishReason::None;
  size_t consumed = 0; // tokens fed until the end
  std::string stopReason;
};

Fed feed(const qrt::Tokenizer &tok, const SamplingParams &p,
         const std::vector<int32_t> &toks, int32_t maxTotal = 1 << 20) {
  std::vector<int32_t> eos = {kEos};
  StopChecker sc(&tok, p, eos);
  Fed f;
  for (size_t i = 0; i < toks.size(); ++i) {
    f.reason = sc.push(toks[i], int32_t(i + 1), int32_t(i + 1), maxTotal);
    std::string piece = sc.takeNewText();
    EXPECT_TRUE(validUtf8Piece(piece)) << "piece " << i;
    f.streamed += piece;
    // What was streamed is never taken back.
    EXPECT_EQ(sc.text().compare(0, f.streamed.size(), f.streamed), 0);
    if (f.reason != FinishReason::None) {
      f.consumed = i + 1;
      f.stopReason = sc.stopReason();
      EXPECT_EQ(f.streamed, sc.text());
      return f;
    }
  }
  f.consumed = toks.size();
  return f;
}

TEST(StopChecker, StopStringSpanningTokensCutsTheText) {
  auto tok = tinyTokenizer();
  ASSERT_TRUE(tok);
  SamplingParams p;
  p.maxTokens = 100;
  p.stop = {"wor"};
  Fed f = feed(*tok, p, ids("hello world again"));
  EXPECT_EQ(f.reason, FinishReason::Stop);
  EXPECT_EQ(f.streamed, "hello ");
  EXPECT_EQ(f.consumed, 9u); // "hello wor"
  EXPECT_EQ(f.stopReason, "wor");
  p.includeStopStrInOutput = true;
  EXPECT_EQ(feed(*tok, p, ids("hello world again")).streamed, "hello wor");
  // The earliest match wins among several stop strings.
  p.includeStopStrInOutput = false;
  p.stop = {"orld", "o w", "again"};
  f = feed(*tok, p, ids("hello world again"));
  EXPECT_EQ(f.streamed, "hell");
  EXPECT_EQ(f.stopReason, "o w");
}

TEST(StopChecker, HoldsBackWhatCouldStartAStopString) {
  auto tok = tinyTokenizer();
  SamplingParams p;
  p.maxTokens = 4;
  p.stop = {"xyz"};
  std::vector<int32_t> eos = {kEos};
  StopChecker sc(tok.get(), p, eos);
  std::string got;
  auto t = ids("abcd");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sc.push(t[size_t(i)], i + 1, i + 1, 100), FinishReason::None);
    got += sc.takeNewText();
  }
  EXPECT_EQ(got, "a"); // the last (longest stop - 1) = 2 bytes wait
  EXPECT_EQ(sc.push(t[3], 4, 4, 100), FinishReason::Length);
  got += sc.takeNewText();
  EXPECT_EQ(got, "abcd"); // everything once finished
}

TEST(StopChecker, EosAndStopIdsEndWithoutText) {
  auto tok = tinyTokenizer();
  SamplingParams p;
  p.maxTokens = 100;
  auto t = ids("abc");
  t.push_back(kEos);
  t.push_back(ids("d")[0]);
  Fed f = feed(*tok, p, t);
  EXPECT_EQ(f.reason, FinishReason::Stop);
  EXPECT_EQ(f.consumed, 4u);
  EXPECT_EQ(f.streamed, "abc");
  EXPECT_EQ(f.stopReason, std::to_string(kEos));
  p.ignoreEos = true;
  p.stopTokenIds = {ids("d")[0]};
  f = feed(*tok, p, t);
  EXPECT_EQ(f.consumed, 5u);
  EXPECT_EQ(f.streamed, "abc"); // EOS is special: skipped in the text
}

TEST(StopChecker, MaxTokensAndContextLengthEndWithLength) {
  auto tok = tinyTokenizer();
  SamplingParams p;
  p.maxTokens = 3;
  Fed f = feed(*tok, p, ids("abcdef"));
  EXPECT_EQ(f.reason, FinishReason::Length);
  EXPECT_EQ(f.consumed, 3u);
  EXPECT_EQ(f.streamed, "abc");
  p.maxTokens = 100;
  f = feed(*tok, p, ids("abcdef"), /*maxTotal=*/5);
  EXPECT_EQ(f.consumed, 5u);
}

TEST(StopChecker, SplitCharactersStreamWhole) {
  auto tok = tinyTokenizer();
  SamplingParams p;
  p.maxTokens = 100;
  p.stop = {"\xC3\xA9" "b"}; // "éb"
  std::vector<int32_t> t = {0, kE1, kE2, 0, kE1, kE2, 1, 2};
  Fed f = feed(*tok, p, t);
  EXPECT_EQ(f.reason, FinishReason::Stop);
  EXPECT_EQ(f.streamed, "a\xC3\xA9" "a");
  EXPECT_EQ(f.consumed, 7u);
  // An incomplete character at the end becomes U+FFFD when generation ends.
  p.stop.clear();
  p.maxTokens = 2;
  f = feed(*tok, p, {0, kE1});
  EXPECT_EQ(f.streamed, "a\xEF\xBF\xBD");
}

TEST(StopChecker, RandomStreamsMatchTheDecodeOracle) {
  auto tok = tinyTokenizer();
  std::mt19937 rng(5);
  for (int iter = 0; iter < 400; ++iter) {
    std::vector<int32_t> t;
    for (int i = 0; i < 60; ++i) {
      int r = int(rng() % 10);
      if (r < 2) { // é, both halves
        t.push_back(kE1);
        t.push_back(kE2);
      } else {
        t.push_back(r == 2 ? kSpace : int32_t(rng() % 4)); // a-d
      }
    }
    SamplingParams p;
    p.maxTokens = int32_t(t.size()); // the last token ends it at the latest
    int ns = 1 + int(rng() % 3);
    for (int s = 0; s < ns; ++s) {
      std::string stop;
      int len = 1 + int(rng() % 4);
      for (int k = 0; k < len; ++k)
        stop += "abcd "[rng() % 5];
      p.stop.push_back(stop);
    }
    p.includeStopStrInOutput = rng() % 2;
    // Oracle: the first prefix of ids whose decoded text holds a stop string.
    size_t end = t.size();
    std::string want = tok->decode(t, true);
    for (size_t e = 1; e <= t.size(); ++e) {
      std::string text = tok->decode(std::vector<int32_t>(t.begin(), t.begin() + long(e)), true);
      size_t best = std::string::npos, bestLen = 0;
      for (const std::string &s : p.stop) {
        size_t q = text.find(s);
        if (q != std::string::npos && (q < best || (q == best && s.size() > bestLen))) {
          best = q;
          bestLen = s.size();
        }
      }
      if (best != std::string::npos) {
        end = e;
        want = text.substr(0, p.includeStopStrInOutput ? best + bestLen : best);
        break;
      }
    }
    Fed f = feed(*tok, p, t);
    ASSERT_EQ(f.consumed, end) << "iteration " << iter;
    ASSERT_EQ(f.streamed, want) << "iteration " << iter;
    if (end < t.size()) {
      EXPECT_EQ(f.reason, FinishReason::Stop);
    }
  }
}

TEST(StopChecker, EngineStreamsTextAndStopsOnAString) {
  auto tok = tinyTokenizer();
  std::string err;
  auto kv = KVCache::create(test::fakeKVSpec(16), 1 << 20, &err);
  ASSERT_TRUE(kv) << err;
  test::FakeModel model(*kv, kVocab);
  EngineConfig ec;
  ec.scheduler.numBlocks = kv->numBlocks();
  ec.scheduler.maxModelLen = 256;
  auto engine = Engine::create(ec, model, tok.get(), &err);
  ASSERT_TRUE(engine) << err;
  ASSERT_EQ(engine->eosTokenIds(), std::vector<int32_t>{kEos});
  int checked = 0;
  for (uint32_t seed = 0; seed < 120; ++seed) {
    std::vector<int32_t> prompt = ids("the prompt");
    prompt.push_back(int32_t(seed % 26));
    SamplingParams p;
    p.temperature = 0;
    p.maxTokens = 60;
    auto oracle = test::referenceGenerate(prompt, p, 0, kVocab, 256, {kEos});
    std::string full = tok->decode(oracle, true);
    if (full.size() < 24)
      continue;
    std::string stop = full.substr(14, 3);
    // A lone continuation byte decodes to U+FFFD, which the stream decoder
    // may only release one token later: keep such stops out of this test.
    if (!validUtf8Piece(stop) || stop.find("\xEF\xBF\xBD") != std::string::npos ||
        full.find("\xEF\xBF\xBD") < full.find(stop) + stop.size())
      continue;
    p.stop = {stop};
    // Expected: tokens up to the one completing the first occurrence.
    size_t n = 1;
    while (tok->decode(std::vector<int32_t>(oracle.begin(), oracle.begin() + long(n)), true)
               .find(stop) == std::string::npos)
      ++n;
    RequestId id = engine->addRequest(prompt, p);
    std::string text;
    std::vector<int32_t> got;
    RequestOutput last;
    while (engine->hasUnfinished())
      for (RequestOutput &o : engine->step()) {
        EXPECT_EQ(o.id, id);
        text += o.newText;
        got.insert(got.end(), o.newTokenIds.begin(), o.newTokenIds.end());
        last = o;
      }
    EXPECT_TRUE(last.finished);
    EXPECT_EQ(last.finishReason, FinishReason::Stop);
    EXPECT_EQ(last.stopReason, stop);
    EXPECT_EQ(text, full.substr(0, full.find(stop)));
    EXPECT_EQ(got, std::vector<int32_t>(oracle.begin(), oracle.begin() + long(n)));
    ++checked;
  }
  EXPECT_GT(checked, 10);
  EXPECT_EQ(model.problem, "");
}

} // namespace
