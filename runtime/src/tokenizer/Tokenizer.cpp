//===- Tokenizer.cpp - public qrt::Tokenizer API -------------------------===//
//
// The encode pipeline mirrors HF tokenizers: repair UTF-8, cut out added
// tokens (normalizing the text between them), pre-tokenize each remaining
// piece, run the model on each piece, then truncate, add the template's
// special tokens and pad. No exception escapes this file.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/tokenizer.h"

#include "TokenizerImpl.h"
#include "Utf8.h"

#include <filesystem>
#include <fstream>

namespace qrt {

using namespace tok;

namespace {

// Error messages are one line: control characters from a hostile file (in
// quoted tokens) are escaped.
std::string oneLine(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += '?';
    else
      out += c;
  }
  return out;
}

void setError(std::string *error, const std::string &name,
              const std::string &msg) {
  if (error)
    *error = oneLine(name + ": " + msg);
}

} // namespace

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl)
    : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::fromJson(const std::string &jsonText,
                                               const std::string &name,
                                               std::string *error) {
  try {
    return std::unique_ptr<Tokenizer>(new Tokenizer(loadTokenizer(jsonText)));
  } catch (const LoadError &e) {
    setError(error, name, e.what());
  } catch (const nlohmann::json::parse_error &e) {
    setError(error, name, std::string("invalid JSON: ") + e.what());
  } catch (const nlohmann::json::exception &e) {
    setError(error, name, std::string("malformed tokenizer.json: ") + e.what());
  } catch (const std::bad_alloc &) {
    setError(error, name, "out of memory while loading");
  } catch (const std::exception &e) {
    setError(error, name, e.what());
  } catch (...) {
    setError(error, name, "unknown error while loading");
  }
  return nullptr;
}

std::unique_ptr<Tokenizer> Tokenizer::fromFile(const std::string &path,
                                               std::string *error) {
  // Real tokenizer.json files are at most tens of MB; refusing huge inputs
  // keeps a wrong path (a weights file, say) from being read into memory.
  constexpr uintmax_t kMaxFileBytes = uintmax_t(1) << 30;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    setError(error, path,
             ec ? "cannot open file: " + ec.message()
                : std::filesystem::exists(path, ec)
                      ? std::string("not a regular file")
                      : std::string("cannot open file: no such file"));
    return nullptr;
  }
  uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    setError(error, path, "cannot read file size: " + ec.message());
    return nullptr;
  }
  if (size > kMaxFileBytes) {
    setError(error, path, "file is " + std::to_string(size) +
                              " bytes; a tokenizer.json is far smaller");
    return nullptr;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    setError(error, path, "cannot open file");
    return nullptr;
  }
  std::string text(size_t(size), '\0');
  if (size > 0 && !in.read(&text[0], std::streamsize(size))) {
    setError(error, path, "read error (not a regular file?)");
    return nullptr;
  }
  if (text.empty()) {
    setError(error, path, "file is empty");
    return nullptr;
  }
  return fromJson(text, path, error);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecial) const {
  std::vector<int32_t> ids;
  try {
    const TokenizerImpl &t = *impl_;
    std::string clean =
        utf8::isValid(text) ? std::string(text) : utf8::repair(text);
    std::vector<Segment> segments;
    t.added.extract(clean, t.normalizer.get(), segments);
    std::vector<Piece> pieces;
    for (Segment &seg : segments) {
      if (seg.tokenId >= 0) {
        ids.push_back(seg.tokenId);
        continue;
      }
      pieces.clear();
      pieces.push_back({std::move(seg.text), seg.atOrigin});
      if (t.preTokenizer)
        t.preTokenizer->apply(pieces);
      for (const Piece &p : pieces)
        t.model->tokenize(p.text, ids);
    }

    if (t.truncation.enabled) {
      size_t reserve =
          addSpecial && t.postProcessor ? t.postProcessor->addedCount() : 0;
      size_t limit =
          t.truncation.maxLength > reserve ? t.truncation.maxLength - reserve
                                           : 0;
      if (ids.size() > limit) {
        if (t.truncation.keepEnd)
          ids.erase(ids.begin(), ids.end() - std::ptrdiff_t(limit));
        else
          ids.resize(limit);
      }
    }
    if (addSpecial && t.postProcessor)
      t.postProcessor->process(ids);
    if (t.padding.enabled) {
      size_t target = t.padding.fixedLength ? t.padding.fixedLength
                                            : ids.size();
      size_t m = t.padding.multipleOf;
      if (m > 0 && target % m != 0)
        target += m - target % m;
      if (ids.size() < target) {
        size_t n = target - ids.size();
        ids.insert(t.padding.padFront ? ids.begin() : ids.end(), n,
                   t.padding.padId);
      }
    }
  } catch (...) {
    // Only allocation failure can get here; an empty result is the honest
    // answer rather than a partial one.
    ids.clear();
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecial) const {
  try {
    const TokenizerImpl &t = *impl_;
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const std::string *text = t.tokenText(id);
      if (!text)
        continue; // unknown ids are skipped, as HF does
      if (skipSpecial && t.added.isSpecialContent(*text))
        continue;
      tokens.push_back(*text);
    }
    std::string out;
    if (t.decoder) {
      t.decoder->decodeChain(tokens);
      for (const std::string &s : tokens)
        out += s;
    } else {
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i)
          out += ' ';
        out += tokens[i];
      }
    }
    return utf8::isValid(out) ? out : utf8::repair(out);
  } catch (...) {
    return std::string();
  }
}

std::string Tokenizer::tokenBytes(int32_t id) const {
  try {
    const std::string *text = impl_->tokenText(id);
    if (!text)
      return std::string();
    std::string piece = *text;
    if (impl_->decoder)
      impl_->decoder->rawPiece(piece);
    return piece;
  } catch (...) {
    return std::string();
  }
}

int32_t Tokenizer::vocabSize() const {
  return std::max(impl_->model->idLimit(), impl_->added.idLimit());
}

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  if (auto id = impl_->added.tokenToId(token))
    return id;
  return impl_->model->tokenToId(token);
}

std::optional<std::string> Tokenizer::idToToken(int32_t id) const {
  if (const std::string *t = impl_->tokenText(id))
    return *t;
  return std::nullopt;
}

bool Tokenizer::isSpecial(int32_t id) const {
  const std::string *t = impl_->tokenText(id);
  return t && impl_->added.isSpecialContent(*t);
}

std::optional<int32_t> Tokenizer::bosId() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eosId() const { return impl_->eos; }

} // namespace qrt
