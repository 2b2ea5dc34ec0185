//===- PreTokenizers.cpp - tokenizer.json "pre_tokenizer" parts ----------===//
#include "PreTokenizers.h"

#include "ByteLevel.h"
#include "Split.h"
#include "Utf8.h"

namespace qrt::tok {

namespace {

// GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is set.
constexpr const char *kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Rust regex / char-predicate classes used by the fixed pre-tokenizers.
constexpr const char *kRustWord =
    R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control})";
// HF's Punctuation uses the `unicode_categories` crate, whose tables are
// older than PCRE2's: it misses these newer punctuation characters and still
// counts U+166D and U+111C9 (recategorized since). Measured exhaustively
// against tokenizers 0.23 over every code point assigned in Unicode 14.
constexpr const char *kPunctuation =
    R"((?![\x{61D}\x{9FD}\x{A76}\x{C77}\x{C84}\x{1B7D}\x{1B7E})"
    R"(\x{2E43}-\x{2E4F}\x{2E52}-\x{2E5D}\x{10EAD}\x{10F55}-\x{10F59})"
    R"(\x{10F86}-\x{10F89}\x{1144B}-\x{1144F}\x{1145A}\x{1145B}\x{1145D})"
    R"(\x{11660}-\x{1166C}\x{116B9}\x{1183B}\x{11944}-\x{11946}\x{119E2})"
    R"(\x{11A3F}-\x{11A46}\x{11A9A}-\x{11A9C}\x{11A9E}-\x{11AA2})"
    R"(\x{11C41}-\x{11C45}\x{11C70}\x{11C71}\x{11EF7}\x{11EF8}\x{11FFF})"
    R"(\x{12FF1}\x{12FF2}\x{16E97}-\x{16E9A}\x{16FE2}\x{1E95E}\x{1E95F}]))"
    R"([\p{P}\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E})"
    R"(\x{166D}\x{111C9}])";

/// Splits every piece with `pattern`/`behavior`; sub-pieces inherit
/// atOrigin only when they start at offset 0 of their piece.
void splitPieces(std::vector<Piece> &pieces, const SplitPattern &pattern,
                 SplitBehavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  std::vector<Range> ranges;
  for (Piece &p : pieces) {
    ranges.clear();
    splitByPattern(p.text, pattern, behavior, invert, ranges);
    if (ranges.size() == 1 && ranges[0].first == 0 &&
        ranges[0].second == p.text.size()) {
      out.push_back(std::move(p));
      continue;
    }
    for (auto [b, e] : ranges)
      out.push_back({p.text.substr(b, e - b), p.atOrigin && b == 0});
  }
  pieces.swap(out);
}

class SequencePre : public PreTokenizer {
public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void apply(std::vector<Piece> &pieces) const override {
    for (const auto &p : parts_)
      p->apply(pieces);
  }

private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPre : public PreTokenizer {
public:
  SplitPre(std::unique_ptr<SplitPattern> pattern, SplitBehavior behavior,
           bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void apply(std::vector<Piece> &pieces) const override {
    splitPieces(pieces, *pattern_, behavior_, invert_);
  }

private:
  std::unique_ptr<SplitPattern> pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPre : public PreTokenizer {
public:
  ByteLevelPre(bool addPrefixSpace, bool useRegex, const std::string &path)
      : addPrefixSpace_(addPrefixSpace) {
    if (useRegex)
      regex_ = std::make_unique<RegexPattern>(
          kGpt2Regex, Regex::Syntax::Oniguruma, path);
  }
  void apply(std::vector<Piece> &pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    std::vector<Range> ranges;
    for (Piece &p : pieces) {
      if (addPrefixSpace_ && p.text[0] != ' ')
        p.text.insert(0, " ");
      ranges.clear();
      if (regex_)
        splitByPattern(p.text, *regex_, SplitBehavior::Isolated, false,
                       ranges);
      else
        ranges.emplace_back(0, p.text.size());
      for (auto [b, e] : ranges) {
        Piece sub{std::string(), p.atOrigin && b == 0};
        sub.text.reserve((e - b) * 2);
        bytelevel::encode(std::string_view(p.text).substr(b, e - b),
                          sub.text);
        out.push_back(std::move(sub));
      }
    }
    pieces.swap(out);
  }

private:
  bool addPrefixSpace_;
  std::unique_ptr<RegexPattern> regex_;
};

class MetaspacePre : public PreTokenizer {
public:
  MetaspacePre(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split),
        pattern_(std::move(replacement)) {}
  void apply(std::vector<Piece> &pieces) const override {
    for (Piece &p : pieces) {
      std::string t;
      t.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ')
          t += replacement_;
        else
          t.push_back(c);
      }
      bool startsWithRep = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!startsWithRep && (scheme_ == PrependScheme::Always ||
                             (scheme_ == PrependScheme::First && p.atOrigin)))
        t.insert(0, replacement_);
      p.text.swap(t);
    }
    if (split_)
      splitPieces(pieces, pattern_, SplitBehavior::MergedWithNext, false);
  }

private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  LiteralPattern pattern_;
};

/// Reads Metaspace's replacement character (exactly one code point in HF).
std::string readReplacement(const Json &j, const std::string &where) {
  std::string rep = getStringOr(j, "replacement", where, "\xE2\x96\x81");
  size_t i = 0;
  if (rep.empty() || (utf8::next(rep, i), i != rep.size()))
    throw LoadError(where + ".replacement must be exactly one character");
  return rep;
}

} // namespace

PrependScheme readPrependScheme(const Json &j, const std::string &where) {
  const Json *ps = field(j, "prepend_scheme", where);
  if (ps && !ps->is_null()) {
    if (!ps->is_string())
      throw LoadError(where + ".prepend_scheme must be a string");
    std::string s = ps->get<std::string>();
    if (s == "always")
      return PrependScheme::Always;
    if (s == "first")
      return PrependScheme::First;
    if (s == "never")
      return PrependScheme::Never;
    throw LoadError(where + ".prepend_scheme '" + s +
                    "' is not always/first/never");
  }
  // Files written before prepend_scheme existed carry add_prefix_space.
  return getBoolOr(j, "add_prefix_space", where, true)
             ? PrependScheme::Always
             : PrependScheme::Never;
}

std::unique_ptr<PreTokenizer> makePreTokenizer(const Json &j,
                                               const std::string &path) {
  if (j.is_null())
    return nullptr;
  std::string type = getType(j, path);
  std::string where = path + " (" + type + ")";
  if (type == "Sequence") {
    const Json &arr = getArray(j, "pretokenizers", where);
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < arr.size(); ++i)
      if (auto p = makePreTokenizer(arr[i], path + ".pretokenizers[" +
                                                std::to_string(i) + "]"))
        parts.push_back(std::move(p));
    return std::make_unique<SequencePre>(std::move(parts));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(
        getBoolOr(j, "add_prefix_space", where, true),
        getBoolOr(j, "use_regex", where, true), where);
  if (type == "Split") {
    const Json *pat = field(j, "pattern", where);
    if (!pat)
      throw LoadError(where + ".pattern is missing");
    return std::make_unique<SplitPre>(
        makePattern(*pat, where + ".pattern"),
        parseSplitBehavior(getString(j, "behavior", where), where),
        getBoolOr(j, "invert", where, false));
  }
  if (type == "Metaspace") {
    PrependScheme scheme = readPrependScheme(j, where);
    return std::make_unique<MetaspacePre>(readReplacement(j, where), scheme,
                                          getBoolOr(j, "split", where, true));
  }
  if (type == "Digits") {
    bool individual = getBoolOr(j, "individual_digits", where, false);
    return std::make_unique<SplitPre>(
        std::make_unique<RegexPattern>("\\p{N}", Regex::Syntax::Pcre, where),
        individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous,
        false);
  }
  if (type == "Whitespace") {
    std::string w = kRustWord;
    return std::make_unique<SplitPre>(
        std::make_unique<RegexPattern>("[" + w + "]+|[^" + w +
                                           "\\p{White_Space}]+",
                                       Regex::Syntax::Pcre, where),
        SplitBehavior::Removed, true);
  }
  if (type == "WhitespaceSplit")
    return std::make_unique<SplitPre>(
        std::make_unique<RegexPattern>("\\p{White_Space}",
                                       Regex::Syntax::Pcre, where),
        SplitBehavior::Removed, false);
  if (type == "Punctuation")
    return std::make_unique<SplitPre>(
        std::make_unique<RegexPattern>(kPunctuation, Regex::Syntax::Pcre,
                                       where),
        parseSplitBehavior(getStringOr(j, "behavior", where, "Isolated"),
                           where),
        false);
  throw LoadError(path + ": unsupported pre_tokenizer type '" + type +
                  "' (supported: Sequence, ByteLevel, Split, Metaspace, "
                  "Digits, Whitespace, WhitespaceSplit, Punctuation)");
}

} // namespace qrt::tok
