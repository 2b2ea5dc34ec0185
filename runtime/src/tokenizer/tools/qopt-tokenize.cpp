//===- qopt-tokenize.cpp - command-line front end to qrt::Tokenizer -------===//
//
// Encodes and decodes with a tokenizer.json, for people and for the
// comparison test against HF tokenizers (test/runtime/compare_tokenizers.py).
//
//   qopt-tokenize encode TOKENIZER FILE [--add-special] [--time]
//       prints the ids of FILE's bytes on one line, space separated
//   qopt-tokenize decode TOKENIZER FILE [--skip-special]
//       FILE holds whitespace-separated ids; prints the decoded text
//   qopt-tokenize encode-json TOKENIZER FILE [--add-special]
//       FILE is a JSON array of strings; prints a JSON array of id arrays
//   qopt-tokenize decode-json TOKENIZER FILE [--skip-special]
//       FILE is a JSON array of id arrays; prints {"decoded": [...],
//       "streamed": [...]} (streamed = StreamDecoder pieces concatenated)
//   qopt-tokenize info TOKENIZER
//       prints vocab size and BOS/EOS ids as JSON
//
// FILE may be "-" for standard input.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using nlohmann::json;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: qopt-tokenize encode|decode|encode-json|decode-json "
               "TOKENIZER FILE [--add-special] [--skip-special] [--time]\n"
               "       qopt-tokenize info TOKENIZER\n");
  return 2;
}

bool readAll(const std::string &path, std::string &out) {
  std::ostringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      return false;
    ss << in.rdbuf();
  }
  out = ss.str();
  return true;
}

// Ids outside int32 become -1, which decode skips like any unknown id.
int32_t toId(const json &v) {
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x >= INT32_MIN && x <= INT32_MAX)
      return int32_t(x);
  }
  return -1;
}

std::string dumpJson(const json &j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> pos;
  bool addSpecial = false, skipSpecial = false, timeIt = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--add-special")
      addSpecial = true;
    else if (a == "--skip-special")
      skipSpecial = true;
    else if (a == "--time")
      timeIt = true;
    else if (a.size() > 1 && a[0] == '-' && a[1] == '-')
      return usage();
    else
      pos.push_back(a);
  }
  if (pos.size() < 2)
    return usage();
  const std::string &cmd = pos[0];

  std::string error;
  auto tok = qrt::Tokenizer::fromFile(pos[1], &error);
  if (!tok) {
    std::fprintf(stderr, "qopt-tokenize: %s\n", error.c_str());
    return 1;
  }
  if (cmd == "info") {
    json j = {{"vocab_size", tok->vocabSize()}};
    j["bos_id"] = tok->bosId() ? json(*tok->bosId()) : json(nullptr);
    j["eos_id"] = tok->eosId() ? json(*tok->eosId()) : json(nullptr);
    std::cout << dumpJson(j) << "\n";
    return 0;
  }
  if (pos.size() != 3)
    return usage();
  std::string input;
  if (!readAll(pos[2], input)) {
    std::fprintf(stderr, "qopt-tokenize: %s: cannot read file\n",
                 pos[2].c_str());
    return 1;
  }

  try {
    if (cmd == "encode") {
      auto t0 = std::chrono::steady_clock::now();
      std::vector<int32_t> ids = tok->encode(input, addSpecial);
      auto t1 = std::chrono::steady_clock::now();
      std::string line;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i)
          line += ' ';
        line += std::to_string(ids[i]);
      }
      std::cout << line << "\n";
      if (timeIt)
        std::fprintf(stderr, "encoded %zu bytes into %zu tokens in %.1f ms\n",
                     input.size(), ids.size(),
                     std::chrono::duration<double, std::milli>(t1 - t0)
                         .count());
      return 0;
    }
    if (cmd == "decode") {
      std::istringstream ss(input);
      std::vector<int32_t> ids;
      long long x;
      while (ss >> x)
        ids.push_back(x >= INT32_MIN && x <= INT32_MAX ? int32_t(x) : -1);
      std::cout << tok->decode(ids, skipSpecial);
      return 0;
    }
    if (cmd == "encode-json") {
      json in = json::parse(input);
      json out = json::array();
      for (const json &s : in) {
        if (!s.is_string()) {
          std::fprintf(stderr, "qopt-tokenize: encode-json wants strings\n");
          return 1;
        }
        out.push_back(tok->encode(s.get<std::string>(), addSpecial));
      }
      std::cout << dumpJson(out) << "\n";
      return 0;
    }
    if (cmd == "decode-json") {
      json in = json::parse(input);
      json decoded = json::array(), streamed = json::array();
      qrt::StreamDecoder stream(*tok, skipSpecial);
      for (const json &arr : in) {
        std::vector<int32_t> ids;
        if (arr.is_array())
          for (const json &v : arr)
            ids.push_back(toId(v));
        decoded.push_back(tok->decode(ids, skipSpecial));
        std::string text;
        for (int32_t id : ids)
          text += stream.push(id);
        text += stream.flush();
        streamed.push_back(text);
      }
      std::cout << dumpJson({{"decoded", decoded}, {"streamed", streamed}})
                << "\n";
      return 0;
    }
  } catch (const std::exception &e) {
    std::fprintf(stderr, "qopt-tokenize: %s\n", e.what());
    return 1;
  }
  return usage();
}
