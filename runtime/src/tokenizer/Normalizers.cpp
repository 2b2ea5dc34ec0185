//===- Normalizers.cpp - tokenizer.json "normalizer" components ----------===//
//
// Unicode normalization forms and lowercasing need Unicode data tables; they
// come from ICU when the runtime is built with it (QOPT_RT_HAVE_ICU), and are
// otherwise refused at load time rather than approximated.
//
//===----------------------------------------------------------------------===//
#include "Normalizers.h"

#include "Split.h"
#include "Utf8.h"

#include <vector>

#ifdef QOPT_RT_HAVE_ICU
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uset.h>
#include <unicode/ustring.h>
#endif

namespace qrt::tok {

namespace {

class SequenceNormalizer : public Normalizer {
public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void normalize(std::string &text) const override {
    for (const auto &p : parts_)
      p->normalize(text);
  }

private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string &text) const override {
    if (!text.empty()) // HF prepends only to non-empty text
      text.insert(0, prefix_);
  }

private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
public:
  ReplaceNormalizer(std::unique_ptr<SplitPattern> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string &text) const override {
    std::vector<Range> matches;
    pattern_->find(text, matches);
    if (matches.empty())
      return;
    std::string out;
    out.reserve(text.size() + matches.size() * content_.size());
    size_t prev = 0;
    for (auto [b, e] : matches) {
      out.append(text, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(text, prev, std::string::npos);
    text.swap(out);
  }

private:
  std::unique_ptr<SplitPattern> pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string &text) const override {
    size_t b = 0, e = text.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!utf8::isWhiteSpace(utf8::next(text, i)))
          break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(text[start]) & 0xC0) ==
                                0x80)
          --start;
        size_t i = start;
        if (!utf8::isWhiteSpace(utf8::next(text, i)))
          break;
        e = start;
      }
    }
    text = text.substr(b, e - b);
  }

private:
  bool left_, right_;
};

#ifdef QOPT_RT_HAVE_ICU
bool isAscii(const std::string &s) {
  for (unsigned char c : s)
    if (c >= 0x80)
      return false;
  return true;
}

bool toUtf16(const std::string &s, std::vector<UChar> &out) {
  UErrorCode st = U_ZERO_ERROR;
  int32_t len = 0;
  out.resize(s.size() + 1);
  u_strFromUTF8(out.data(), int32_t(out.size()), &len, s.data(),
                int32_t(s.size()), &st);
  if (U_FAILURE(st))
    return false;
  out.resize(size_t(len));
  return true;
}

bool toUtf8(const UChar *s, int32_t n, std::string &out) {
  UErrorCode st = U_ZERO_ERROR;
  int32_t len = 0;
  out.resize(size_t(n) * 3 + 1);
  u_strToUTF8(out.data(), int32_t(out.size()), &len, s, n, &st);
  if (U_FAILURE(st))
    return false;
  out.resize(size_t(len));
  return true;
}

class UnicodeFormNormalizer : public Normalizer {
public:
  /// `owned` and `filter` (may be null) are released with this object.
  UnicodeFormNormalizer(const UNormalizer2 *n, UNormalizer2 *owned,
                        USet *filter)
      : norm_(n), owned_(owned), filter_(filter) {}
  ~UnicodeFormNormalizer() override {
    if (owned_)
      unorm2_close(owned_);
    if (filter_)
      uset_close(filter_);
  }
  void normalize(std::string &text) const override {
    if (isAscii(text) || text.size() > size_t(INT32_MAX / 4))
      return; // ASCII is invariant under every form
    std::vector<UChar> in;
    if (!toUtf16(text, in))
      return;
    UErrorCode st = U_ZERO_ERROR;
    if (unorm2_quickCheck(norm_, in.data(), int32_t(in.size()), &st) ==
            UNORM_YES &&
        U_SUCCESS(st))
      return;
    st = U_ZERO_ERROR;
    // Decomposition can grow text; ask ICU for the size when it does not fit.
    std::vector<UChar> out(in.size() * 2 + 16);
    int32_t n = unorm2_normalize(norm_, in.data(), int32_t(in.size()),
                                 out.data(), int32_t(out.size()), &st);
    if (st == U_BUFFER_OVERFLOW_ERROR) {
      out.resize(size_t(n));
      st = U_ZERO_ERROR;
      n = unorm2_normalize(norm_, in.data(), int32_t(in.size()), out.data(),
                           int32_t(out.size()), &st);
    }
    if (U_FAILURE(st))
      return;
    std::string res;
    if (toUtf8(out.data(), n, res))
      text.swap(res);
  }

private:
  const UNormalizer2 *norm_;
  UNormalizer2 *owned_;
  USet *filter_;
};

// HF lowercases one character at a time with Rust's char::to_lowercase
// (full mappings, no context such as final sigma).
class LowercaseNormalizer : public Normalizer {
public:
  void normalize(std::string &text) const override {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      uint32_t cp = utf8::next(text, i);
      if (cp < 0x80) {
        out.push_back(char(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
        continue;
      }
      UChar src[2];
      int32_t srcLen = 0;
      U16_APPEND_UNSAFE(src, srcLen, cp);
      UChar dst[8];
      UErrorCode st = U_ZERO_ERROR;
      int32_t n = u_strToLower(dst, 8, src, srcLen, "", &st);
      std::string piece;
      if (U_FAILURE(st) || !toUtf8(dst, n, piece))
        utf8::append(out, cp);
      else
        out += piece;
    }
    text.swap(out);
  }
};
#endif

std::unique_ptr<Normalizer> makeUnicodeForm(const std::string &type,
                                            const std::string &path) {
#ifdef QOPT_RT_HAVE_ICU
  UErrorCode st = U_ZERO_ERROR;
  const UNormalizer2 *n = nullptr;
  if (type == "NFC")
    n = unorm2_getNFCInstance(&st);
  else if (type == "NFD")
    n = unorm2_getNFDInstance(&st);
  else if (type == "NFKC")
    n = unorm2_getNFKCInstance(&st);
  else
    n = unorm2_getNFKDInstance(&st);
  if (U_FAILURE(st) || !n)
    throw LoadError(path + ": ICU could not provide the " + type +
                    " normalizer");
  // HF's unicode-normalization tables are Unicode 11: characters assigned
  // later (e.g. U+1F16C, U+A7F2) are left alone there. A filtered ICU
  // normalizer reproduces that; checked over every code point against
  // tokenizers 0.23 by test/runtime/compare_tokenizers.py.
  static const UChar kHfUnicodeAge[] = u"[:age=11.0:]";
  USet *filter = uset_openPattern(kHfUnicodeAge, -1, &st);
  if (U_FAILURE(st) || !filter)
    throw LoadError(path + ": ICU could not build the Unicode 11 filter");
  uset_freeze(filter);
  UNormalizer2 *filtered = unorm2_openFiltered(n, filter, &st);
  if (U_FAILURE(st) || !filtered) {
    uset_close(filter);
    throw LoadError(path + ": ICU could not build the " + type +
                    " normalizer");
  }
  return std::make_unique<UnicodeFormNormalizer>(filtered, filtered, filter);
#else
  throw LoadError(path + ": normalizer '" + type +
                  "' needs Unicode tables; this qopt runtime was built "
                  "without ICU (install libicu-dev and rebuild)");
#endif
}

} // namespace

std::unique_ptr<Normalizer> makeNormalizer(const Json &j,
                                           const std::string &path) {
  if (j.is_null())
    return nullptr;
  std::string type = getType(j, path);
  std::string where = path + " (" + type + ")";
  if (type == "Sequence") {
    const Json &arr = getArray(j, "normalizers", where);
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < arr.size(); ++i)
      if (auto n = makeNormalizer(arr[i], path + ".normalizers[" +
                                              std::to_string(i) + "]"))
        parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(getString(j, "prepend", where));
  if (type == "Replace") {
    const Json *pat = field(j, "pattern", where);
    if (!pat)
      throw LoadError(where + ".pattern is missing");
    return std::make_unique<ReplaceNormalizer>(
        makePattern(*pat, where + ".pattern"), getString(j, "content", where));
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(
        getBoolOr(j, "strip_left", where, true),
        getBoolOr(j, "strip_right", where, true));
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return makeUnicodeForm(type, path);
  if (type == "Lowercase") {
#ifdef QOPT_RT_HAVE_ICU
    return std::make_unique<LowercaseNormalizer>();
#else
    throw LoadError(where + ": needs Unicode tables; this qopt runtime was "
                            "built without ICU");
#endif
  }
  throw LoadError(path + ": unsupported normalizer type '" + type +
                  "' (supported: Sequence, Prepend, Replace, Strip, NFC, NFD, "
                  "NFKC, NFKD, Lowercase)");
}

} // namespace qrt::tok
