//===- Split.cpp - splitting text around pattern matches -----------------===//
#include "Split.h"

#include <algorithm>

namespace qrt::tok {

SplitBehavior parseSplitBehavior(const std::string &name,
                                 const std::string &path) {
  if (name == "Removed")
    return SplitBehavior::Removed;
  if (name == "Isolated")
    return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious")
    return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext")
    return SplitBehavior::MergedWithNext;
  if (name == "Contiguous")
    return SplitBehavior::Contiguous;
  throw LoadError(path + ": unknown split behavior '" + name + "'");
}

void LiteralPattern::find(std::string_view s, std::vector<Range> &out) const {
  size_t pos = 0;
  while ((pos = s.find(literal_, pos)) != std::string_view::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
}

std::unique_ptr<SplitPattern> makePattern(const Json &j,
                                          const std::string &path) {
  if (!j.is_object() || j.size() != 1)
    throw LoadError(path + " must be {\"String\": ...} or {\"Regex\": ...}");
  if (const Json *s = field(j, "String", path)) {
    if (!s->is_string())
      throw LoadError(path + ".String must be a string");
    std::string lit = s->get<std::string>();
    if (lit.empty())
      throw LoadError(path + ".String is empty (an empty pattern matches "
                             "everywhere; not supported)");
    return std::make_unique<LiteralPattern>(std::move(lit));
  }
  if (const Json *r = field(j, "Regex", path)) {
    if (!r->is_string())
      throw LoadError(path + ".Regex must be a string");
    return std::make_unique<RegexPattern>(r->get<std::string>(),
                                          Regex::Syntax::Oniguruma,
                                          path + ".Regex");
  }
  throw LoadError(path + " must be {\"String\": ...} or {\"Regex\": ...}");
}

namespace {
struct Span {
  size_t start, end;
  bool isMatch;
};
} // namespace

void splitByPattern(std::string_view s, const SplitPattern &pattern,
                    SplitBehavior behavior, bool invert,
                    std::vector<Range> &out) {
  if (s.empty())
    return;
  std::vector<Range> matches;
  pattern.find(s, matches);

  // Spans cover the whole string: gaps are non-matches.
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev < b)
      spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < s.size())
    spans.push_back({prev, s.size(), invert});

  std::vector<Range> pieces;
  pieces.reserve(spans.size());
  switch (behavior) {
  case SplitBehavior::Isolated:
    for (const Span &sp : spans)
      pieces.emplace_back(sp.start, sp.end);
    break;
  case SplitBehavior::Removed:
    for (const Span &sp : spans)
      if (!sp.isMatch)
        pieces.emplace_back(sp.start, sp.end);
    break;
  case SplitBehavior::MergedWithPrevious: {
    bool prevMatch = false;
    for (const Span &sp : spans) {
      if (sp.isMatch && !prevMatch && !pieces.empty())
        pieces.back().second = sp.end;
      else
        pieces.emplace_back(sp.start, sp.end);
      prevMatch = sp.isMatch;
    }
    break;
  }
  case SplitBehavior::MergedWithNext: {
    // Same as MergedWithPrevious, walking from the end.
    bool prevMatch = false;
    for (size_t k = spans.size(); k-- > 0;) {
      const Span &sp = spans[k];
      if (sp.isMatch && !prevMatch && !pieces.empty())
        pieces.back().first = sp.start;
      else
        pieces.emplace_back(sp.start, sp.end);
      prevMatch = sp.isMatch;
    }
    std::reverse(pieces.begin(), pieces.end());
    break;
  }
  case SplitBehavior::Contiguous: {
    bool prevMatch = false;
    for (const Span &sp : spans) {
      if (sp.isMatch == prevMatch && !pieces.empty())
        pieces.back().second = sp.end;
      else
        pieces.emplace_back(sp.start, sp.end);
      prevMatch = sp.isMatch;
    }
    break;
  }
  }
  for (const Range &r : pieces)
    if (r.second > r.first)
      out.push_back(r);
}

} // namespace qrt::tok
