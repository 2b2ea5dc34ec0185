//===- Decoders.cpp - tokenizer.json "decoder" components ----------------===//
#include "Decoders.h"

#include "ByteLevel.h"
#include "PreTokenizers.h"
#include "Split.h"
#include "Utf8.h"

namespace qrt::tok {

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

class SequenceDecoder : public Decoder {
public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void decodeChain(std::vector<std::string> &tokens) const override {
    for (const auto &p : parts_)
      p->decodeChain(tokens);
  }
  void rawPiece(std::string &token) const override {
    for (const auto &p : parts_)
      p->rawPiece(token);
  }

private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Byte-level tokens map back to bytes; a token with a character outside the
// table (e.g. an added token) contributes its own UTF-8. The concatenation
// is then repaired as UTF-8, giving a single string.
class ByteLevelDecoder : public Decoder {
public:
  void decodeChain(std::vector<std::string> &tokens) const override {
    std::string bytes;
    for (const std::string &t : tokens)
      rawAppend(t, bytes);
    tokens.assign(1, utf8::repair(bytes));
  }
  void rawPiece(std::string &token) const override {
    std::string bytes;
    rawAppend(token, bytes);
    token.swap(bytes);
  }

private:
  static void rawAppend(const std::string &t, std::string &out) {
    if (!bytelevel::decode(t, out))
      out += t;
  }
};

// Consecutive <0xNN> tokens are gathered; if their bytes form valid UTF-8
// they become one string, otherwise each byte becomes one U+FFFD (HF's rule).
class ByteFallbackDecoder : public Decoder {
public:
  void decodeChain(std::vector<std::string> &tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    auto flush = [&]() {
      if (pending.empty())
        return;
      if (utf8::isValid(pending))
        out.push_back(pending);
      else
        for (size_t k = 0; k < pending.size(); ++k)
          out.emplace_back(utf8::kReplacement);
      pending.clear();
    };
    for (std::string &t : tokens) {
      int b = parseByteToken(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
  void rawPiece(std::string &token) const override {
    int b = parseByteToken(token);
    if (b >= 0)
      token.assign(1, static_cast<char>(b));
  }
};

class FuseDecoder : public Decoder {
public:
  void decodeChain(std::vector<std::string> &tokens) const override {
    std::string all;
    for (const std::string &t : tokens)
      all += t;
    tokens.assign(1, std::move(all));
  }
  void rawPiece(std::string &) const override {}
};

class ReplaceDecoder : public Decoder {
public:
  ReplaceDecoder(std::unique_ptr<SplitPattern> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decodeChain(std::vector<std::string> &tokens) const override {
    for (std::string &t : tokens)
      rawPiece(t);
  }
  void rawPiece(std::string &t) const override {
    // Tokens reaching here may hold raw bytes from an earlier stage; regex
    // matching needs valid UTF-8, so such tokens are left alone.
    if (!utf8::isValid(t))
      return;
    std::vector<Range> m;
    pattern_->find(t, m);
    if (m.empty())
      return;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(t, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(t, prev, std::string::npos);
    t.swap(out);
  }

private:
  std::unique_ptr<SplitPattern> pattern_;
  std::string content_;
};

// Removes up to `start` leading and `stop` trailing copies of one character
// from every token (Llama-2 uses it to drop the space the encoder added).
class StripDecoder : public Decoder {
public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decodeChain(std::vector<std::string> &tokens) const override {
    for (std::string &t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start_ && b < e && t.compare(b, content_.size(),
                                                          content_) == 0;
           ++k)
        b += content_.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() &&
                         t.compare(e - content_.size(), content_.size(),
                                   content_) == 0;
           ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }
  void rawPiece(std::string &) const override {}

private:
  std::string content_;
  size_t start_, stop_;
};

// Metaspace: the replacement character becomes a space, except that the
// first token loses it entirely when the encoder prepends one.
class MetaspaceDecoder : public Decoder {
public:
  MetaspaceDecoder(std::string replacement, bool dropFirst)
      : replacement_(std::move(replacement)), dropFirst_(dropFirst) {}
  void decodeChain(std::vector<std::string> &tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i)
      replaceAll(tokens[i], i == 0 && dropFirst_ ? "" : " ");
  }
  void rawPiece(std::string &token) const override {
    replaceAll(token, " ");
  }

private:
  void replaceAll(std::string &t, const char *with) const {
    std::string out;
    size_t prev = 0, pos;
    while ((pos = t.find(replacement_, prev)) != std::string::npos) {
      out.append(t, prev, pos - prev);
      out += with;
      prev = pos + replacement_.size();
    }
    if (prev == 0)
      return;
    out.append(t, prev, std::string::npos);
    t.swap(out);
  }
  std::string replacement_;
  bool dropFirst_;
};

std::string oneChar(const Json &j, const char *key, const std::string &where,
                    const std::string &dflt) {
  std::string s = getStringOr(j, key, where, dflt);
  size_t i = 0;
  if (s.empty() || !utf8::isValid(s) || (utf8::next(s, i), i != s.size()))
    throw LoadError(where + "." + key + " must be exactly one character");
  return s;
}

} // namespace

int parseByteToken(const std::string &t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>')
    return -1;
  // Rust's u8::from_str_radix("..", 16): an optional '+' then hex digits.
  if (t[3] == '+')
    return hexDigit(t[4]);
  int hi = hexDigit(t[3]), lo = hexDigit(t[4]);
  if (hi < 0 || lo < 0)
    return -1;
  return hi * 16 + lo;
}

std::unique_ptr<Decoder> makeDecoder(const Json &j, const std::string &path) {
  if (j.is_null())
    return nullptr;
  std::string type = getType(j, path);
  std::string where = path + " (" + type + ")";
  if (type == "Sequence") {
    const Json &arr = getArray(j, "decoders", where);
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < arr.size(); ++i)
      if (auto d = makeDecoder(arr[i], path + ".decoders[" +
                                           std::to_string(i) + "]"))
        parts.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback")
    return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse")
    return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    const Json *pat = field(j, "pattern", where);
    if (!pat)
      throw LoadError(where + ".pattern is missing");
    return std::make_unique<ReplaceDecoder>(
        makePattern(*pat, where + ".pattern"), getString(j, "content", where));
  }
  if (type == "Strip")
    return std::make_unique<StripDecoder>(
        oneChar(j, "content", where, " "),
        size_t(getIntOr(j, "start", where, 0, 1 << 20, 0)),
        size_t(getIntOr(j, "stop", where, 0, 1 << 20, 0)));
  if (type == "Metaspace") {
    bool dropFirst = readPrependScheme(j, where) != PrependScheme::Never;
    return std::make_unique<MetaspaceDecoder>(
        oneChar(j, "replacement", where, "\xE2\x96\x81"), dropFirst);
  }
  throw LoadError(path + ": unsupported decoder type '" + type +
                  "' (supported: Sequence, ByteLevel, ByteFallback, Fuse, "
                  "Replace, Strip, Metaspace)");
}

} // namespace qrt::tok
