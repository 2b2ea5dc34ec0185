//===- Regex.cpp - PCRE2 wrapper with Oniguruma-compatible classes -------===//
#include "Regex.h"

#include "Json.h"
#include "Utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace qrt::tok {

namespace {
// Oniguruma's Unicode \w: Letter | Mark | Decimal_Number |
// Connector_Punctuation (PCRE2 10.42's \w is L, N and '_' only).
constexpr const char *kOnigWord = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";

// Per-thread JIT stack: the default 32 KiB one is too small for long runs
// matched by patterns such as `\s+(?!\S)`; pages are only touched as used.
struct JitResources {
  pcre2_match_context *ctx = nullptr;
  pcre2_jit_stack *stack = nullptr;
  JitResources() {
    ctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (ctx && stack)
      pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~JitResources() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
  }
};

pcre2_match_context *threadMatchContext() {
  thread_local JitResources res;
  return res.ctx;
}
} // namespace

std::string onigToPcre2(const std::string &p, const std::string &path) {
  std::string out;
  out.reserve(p.size() + 16);
  int classDepth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[++i];
      bool in = classDepth > 0;
      switch (d) {
      case 's': out += "\\p{White_Space}"; break;
      case 'S': out += "\\P{White_Space}"; break;
      case 'w': out += in ? std::string(kOnigWord)
                          : "[" + std::string(kOnigWord) + "]"; break;
      case 'W':
        if (in)
          throw LoadError(path + ": \\W inside a character class is not "
                                 "supported");
        out += "[^" + std::string(kOnigWord) + "]";
        break;
      case 'h': out += in ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
      case 'H':
        if (in)
          throw LoadError(path + ": \\H inside a character class is not "
                                 "supported");
        out += "[^0-9a-fA-F]";
        break;
      default:
        out += c;
        out += d;
      }
      continue;
    }
    if (c == '[') {
      if (classDepth > 0) {
        if (i + 1 < p.size() && p[i + 1] == ':') { // POSIX [:alpha:]
          size_t end = p.find(":]", i + 2);
          if (end == std::string::npos)
            throw LoadError(path + ": unterminated POSIX class in regex");
          out.append(p, i, end + 2 - i);
          i = end + 1;
          continue;
        }
        throw LoadError(path + ": nested character classes (Oniguruma "
                               "syntax) are not supported");
      }
      classDepth = 1;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the class end.
      if (i + 1 < p.size() && p[i + 1] == '^')
        out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']')
        out += p[++i];
      continue;
    }
    if (c == ']' && classDepth > 0)
      classDepth = 0;
    out += c;
  }
  return out;
}

std::string quoteRegex(std::string_view literal) {
  // \Q...\E quotes everything except a literal "\E", which is split.
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += literal[i];
    }
  }
  out += "\\E";
  return out;
}

Regex::Regex(const std::string &pattern, Syntax syntax,
             const std::string &path) {
  std::string pcre =
      syntax == Syntax::Oniguruma ? onigToPcre2(pattern, path) : pattern;
  if (!utf8::isValid(pattern))
    throw LoadError(path + ": regex is not valid UTF-8");
  int err = 0;
  PCRE2_SIZE errOffset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                        PCRE2_UTF | PCRE2_UCP, &err, &errOffset, nullptr);
  if (!code_) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    throw LoadError(path + ": invalid regex '" + pattern + "': " +
                    reinterpret_cast<const char *>(buf) + " (at offset " +
                    std::to_string(errOffset) + ")");
  }
  // JIT is an optimization: if it is unavailable, interpretation still works.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() { pcre2_code_free(code_); }

void Regex::findAll(std::string_view s,
                    std::vector<std::pair<size_t, size_t>> &out) const {
  if (s.empty())
    return;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(code_, nullptr);
  if (!md)
    return;
  pcre2_match_context *ctx = threadMatchContext();
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos < s.size()) {
    int rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md,
                         ctx);
    if (rc < 0)
      break; // no match, or a resource limit: the rest stays unmatched
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t start = ov[0], end = ov[1];
    if (start < pos || end < start || end > s.size())
      break; // \K tricks can produce these; refuse rather than misuse them
    if (end == start) {
      if (start >= s.size())
        break;
      // Empty matches produce no split; step over one character.
      pos = start + utf8::charLength(static_cast<unsigned char>(s[start]));
      continue;
    }
    out.emplace_back(start, end);
    pos = end;
  }
  pcre2_match_data_free(md);
}

} // namespace qrt::tok
