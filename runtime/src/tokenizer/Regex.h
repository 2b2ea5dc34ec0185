//===- Regex.h - PCRE2 wrapper with Oniguruma-compatible classes -*- C++ -*-===//
//
// HF tokenizers runs `Split`/`Replace` regexes with Oniguruma, whose Unicode
// `\s` and `\w` differ slightly from PCRE2's (e.g. Oniguruma's `\s` includes
// U+0085). Patterns are rewritten so PCRE2 gives the same matches, then JIT
// compiled. Subjects must be valid UTF-8 (the pipeline guarantees it), which
// lets matching skip PCRE2's per-call UTF check - without that, scanning a
// long text match by match would be quadratic.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_REGEX_H
#define QOPT_RT_TOKENIZER_REGEX_H

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace qrt::tok {

class Regex {
public:
  enum class Syntax {
    Oniguruma, ///< rewrite \s \S \w \W \h \H to Oniguruma's meaning
    Pcre,      ///< pattern is already PCRE2 syntax
  };
  /// Compiles `pattern`; throws LoadError (mentioning `path`) on failure.
  Regex(const std::string &pattern, Syntax syntax, const std::string &path);
  ~Regex();
  Regex(const Regex &) = delete;
  Regex &operator=(const Regex &) = delete;

  /// Appends the [start, end) byte ranges of the non-overlapping, non-empty
  /// matches in `s`, scanning left to right. A matcher failure (resource
  /// limit on a pathological input) ends the scan early, never crashes.
  void findAll(std::string_view s,
               std::vector<std::pair<size_t, size_t>> &out) const;

private:
  pcre2_real_code_8 *code_ = nullptr;
};

/// Rewrites an Oniguruma pattern into PCRE2 syntax with the same meaning for
/// the escapes that differ; throws LoadError for constructs it cannot map.
std::string onigToPcre2(const std::string &pattern, const std::string &path);

/// Escapes `literal` so it matches itself in a PCRE2 pattern.
std::string quoteRegex(std::string_view literal);

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_REGEX_H
