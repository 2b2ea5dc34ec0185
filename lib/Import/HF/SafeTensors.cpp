//===- SafeTensors.cpp - reading and writing .safetensors files -------===//
//
// The header parser is a small strict JSON reader written for this one
// schema rather than a general JSON DOM: it reads tensors in file order,
// sees duplicate keys (a DOM silently keeps the last), bounds nesting depth
// (llvm::json recurses without limit and overflows the stack on "[[[[..."),
// bounds the rank of a shape, and never allocates more than the header's own
// size. Everything else a model file can lie about -- lengths, offsets,
// shapes, dtypes -- is checked against the file before use.
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/SafeTensors.h"

#include <cerrno>
#include <cstring>
#include <unordered_set>

namespace qopt {

namespace {
/// Deepest nesting accepted inside the header. The schema needs 3; unknown
/// fields may carry small objects, nothing legitimate comes close to this.
constexpr int kMaxDepth = 32;
/// Largest rank accepted for a shape.
constexpr size_t kMaxRank = 64;

struct DTypeName {
  const char *name;
  DType dtype;
};
constexpr DTypeName kDTypes[] = {
    {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
    {"F64", DType::F64}, {"I8", DType::I8},   {"U8", DType::U8},
    {"I16", DType::I16}, {"I32", DType::I32}, {"I64", DType::I64},
    {"BOOL", DType::Bool},
};
/// Valid safetensors dtypes that the store cannot hold.
constexpr const char *kUnsupportedDTypes[] = {
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3",
    "F6_E3M2", "F4",      "E8M0",    "U16",         "U32",         "U64",
    "C64",     "C128",
};

/// A name made safe to print in a one-line message: control bytes escaped,
/// very long names cut.
std::string printable(const std::string &s) {
  std::string r;
  for (size_t i = 0; i < s.size() && i < 160; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      static const char *hex = "0123456789abcdef";
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    } else {
      r += char(c);
    }
  }
  if (s.size() > 160)
    r += "...";
  return r;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string r = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    r += (i ? ", " : "") + std::to_string(shape[i]);
  return r + "]";
}

bool validUtf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

/// Reads the header JSON. Each method returns false after setting *error.
class HeaderParser {
public:
  HeaderParser(const char *begin, const char *end, const std::string &source,
               std::string *error)
      : start_(begin), p_(begin), end_(end), source_(source), error_(error) {}

  bool parse(SafeTensorsHeader *out) {
    skipWs();
    if (!consume('{'))
      return fail("the header is not a JSON object");
    std::unordered_set<std::string> seen;
    skipWs();
    if (consume('}'))
      return finish();
    for (;;) {
      skipWs();
      std::string key;
      if (!parseString(&key))
        return false;
      skipWs();
      if (!consume(':'))
        return fail("expected ':' after a key");
      if (!seen.insert(key).second)
        return key == "__metadata__" ? fail("'__metadata__' appears twice")
                                     : failTensor(key, "appears twice in the header");
      skipWs();
      if (key == "__metadata__") {
        if (!parseMetadata(&out->metadata))
          return false;
      } else {
        SafeTensorInfo info;
        info.name = key;
        if (!parseTensor(&info))
          return false;
        out->tensors.push_back(std::move(info));
      }
      skipWs();
      if (consume(','))
        continue;
      if (consume('}'))
        return finish();
      return fail("expected ',' or '}' in the top-level object");
    }
  }

private:
  bool finish() {
    skipWs();
    if (p_ != end_)
      return fail("unexpected bytes after the header's JSON object");
    return true;
  }

  bool fail(const std::string &msg) {
    *error_ = source_ + ": safetensors header: " + msg + " (at byte " +
              std::to_string(8 + (p_ - start_)) + ")";
    return false;
  }
  bool failTensor(const std::string &name, const std::string &msg) {
    *error_ = source_ + ": tensor '" + printable(name) + "': " + msg;
    return false;
  }

  void skipWs() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      ++p_;
  }
  bool consume(char c) {
    if (p_ != end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool consumeWord(const char *w) {
    size_t n = std::strlen(w);
    if (size_t(end_ - p_) >= n && std::memcmp(p_, w, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  bool hex4(uint32_t *v) {
    if (end_ - p_ < 4)
      return fail("truncated \\u escape");
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      r <<= 4;
      if (c >= '0' && c <= '9')
        r |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f')
        r |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        r |= uint32_t(c - 'A' + 10);
      else
        return fail("invalid \\u escape");
    }
    *v = r;
    return true;
  }

  bool parseString(std::string *out) {
    if (!consume('"'))
      return fail("expected a string");
    for (;;) {
      if (p_ == end_)
        return fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"')
        return true;
      if (c < 0x20)
        return fail("control character inside a string");
      if (c != '\\') {
        *out += char(c);
        continue;
      }
      if (p_ == end_)
        return fail("unterminated string");
      char e = *p_++;
      switch (e) {
      case '"': *out += '"'; break;
      case '\\': *out += '\\'; break;
      case '/': *out += '/'; break;
      case 'b': *out += '\b'; break;
      case 'f': *out += '\f'; break;
      case 'n': *out += '\n'; break;
      case 'r': *out += '\r'; break;
      case 't': *out += '\t'; break;
      case 'u': {
        uint32_t cp = 0;
        if (!hex4(&cp))
          return false;
        if (cp >= 0xdc00 && cp <= 0xdfff)
          return fail("unpaired surrogate in a \\u escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
          uint32_t lo = 0;
          if (!consumeWord("\\u") || !hex4(&lo) || lo < 0xdc00 || lo > 0xdfff)
            return fail("unpaired surrogate in a \\u escape");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        appendUtf8(*out, cp);
        break;
      }
      default:
        return fail("invalid escape in a string");
      }
    }
  }

  /// A JSON number that must be a non-negative integer fitting int64.
  bool parseIndex(const std::string &tensor, const char *what, int64_t *out) {
    const char *s = p_;
    bool negative = consume('-');
    if (p_ == end_ || *p_ < '0' || *p_ > '9')
      return failTensor(tensor, std::string(what) + " must be integers");
    uint64_t v = 0;
    bool overflow = false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
        unsigned d = unsigned(*p_++ - '0');
        if (v > (uint64_t(INT64_MAX) - d) / 10)
          overflow = true;
        else
          v = v * 10 + d;
      }
    }
    if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E'))
      return failTensor(tensor, std::string(what) + " must be integers, got '" +
                                    printable(std::string(s, p_ + 1)) + "...'");
    if (negative && (v != 0 || overflow))
      return failTensor(tensor, std::string(what) + " must not be negative (got -" +
                                    (overflow ? std::string("<huge>") : std::to_string(v)) +
                                    ")");
    if (overflow)
      return failTensor(tensor, std::string(what) + " hold a value too large for 64 bits");
    *out = int64_t(v);
    return true;
  }

  bool parseIndexArray(const std::string &tensor, const char *what, size_t maxLen,
                       std::vector<int64_t> *out) {
    if (!consume('['))
      return failTensor(tensor, std::string("'") + what + "' must be an array of integers");
    skipWs();
    if (consume(']'))
      return true;
    for (;;) {
      skipWs();
      if (out->size() == maxLen)
        return failTensor(tensor, std::string("'") + what + "' has more than " +
                                      std::to_string(maxLen) + " entries");
      int64_t v;
      if (!parseIndex(tensor, what, &v))
        return false;
      out->push_back(v);
      skipWs();
      if (consume(','))
        continue;
      if (consume(']'))
        return true;
      return failTensor(tensor, std::string("'") + what + "' is not a well-formed array");
    }
  }

  bool parseTensor(SafeTensorInfo *info) {
    const std::string &name = info->name;
    if (!consume('{'))
      return failTensor(name, "entry must be an object with dtype, shape, data_offsets");
    bool haveDType = false, haveShape = false, haveOffsets = false;
    std::vector<int64_t> offsets;
    skipWs();
    if (!consume('}')) {
      for (;;) {
        skipWs();
        std::string field;
        if (!parseString(&field))
          return false;
        skipWs();
        if (!consume(':'))
          return fail("expected ':' after a key");
        skipWs();
        if (field == "dtype") {
          if (haveDType)
            return failTensor(name, "'dtype' appears twice");
          haveDType = true;
          std::string d;
          if (p_ == end_ || *p_ != '"')
            return failTensor(name, "'dtype' must be a string");
          if (!parseString(&d))
            return false;
          if (!parseSafeTensorsDType(d, &info->dtype)) {
            for (const char *u : kUnsupportedDTypes)
              if (d == u)
                return failTensor(name, "unsupported dtype '" + d + "'");
            return failTensor(name, "unknown dtype '" + printable(d) + "'");
          }
        } else if (field == "shape") {
          if (haveShape)
            return failTensor(name, "'shape' appears twice");
          haveShape = true;
          if (!parseIndexArray(name, "shape", kMaxRank, &info->shape))
            return false;
        } else if (field == "data_offsets") {
          if (haveOffsets)
            return failTensor(name, "'data_offsets' appears twice");
          haveOffsets = true;
          if (!parseIndexArray(name, "data_offsets", 2, &offsets))
            return false;
          if (offsets.size() != 2)
            return failTensor(name, "'data_offsets' must be [begin, end]");
        } else if (!skipValue(1)) {
          return false;
        }
        skipWs();
        if (consume(','))
          continue;
        if (consume('}'))
          break;
        return fail("expected ',' or '}' in the entry of tensor '" + printable(name) + "'");
      }
    }
    if (!haveDType)
      return failTensor(name, "missing 'dtype'");
    if (!haveShape)
      return failTensor(name, "missing 'shape'");
    if (!haveOffsets)
      return failTensor(name, "missing 'data_offsets'");
    info->begin = uint64_t(offsets[0]);
    info->end = uint64_t(offsets[1]);
    return true;
  }

  bool parseMetadata(std::vector<std::pair<std::string, std::string>> *out) {
    if (consumeWord("null"))
      return true;
    if (!consume('{'))
      return fail("'__metadata__' must be an object of strings");
    std::unordered_set<std::string> keys;
    skipWs();
    if (consume('}'))
      return true;
    for (;;) {
      skipWs();
      std::string k, v;
      if (!parseString(&k))
        return false;
      skipWs();
      if (!consume(':'))
        return fail("expected ':' after a key");
      skipWs();
      if (p_ == end_ || *p_ != '"')
        return fail("'__metadata__' value of '" + printable(k) + "' must be a string");
      if (!parseString(&v))
        return false;
      if (!keys.insert(k).second)
        return fail("'__metadata__' key '" + printable(k) + "' appears twice");
      out->emplace_back(std::move(k), std::move(v));
      skipWs();
      if (consume(','))
        continue;
      if (consume('}'))
        return true;
      return fail("expected ',' or '}' in '__metadata__'");
    }
  }

  bool skipNumber() {
    consume('-');
    if (p_ == end_ || *p_ < '0' || *p_ > '9')
      return fail("invalid value");
    if (*p_ == '0')
      ++p_;
    else
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9')
        ++p_;
    if (consume('.')) {
      if (p_ == end_ || *p_ < '0' || *p_ > '9')
        return fail("invalid number");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9')
        ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (!consume('+'))
        consume('-');
      if (p_ == end_ || *p_ < '0' || *p_ > '9')
        return fail("invalid number");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9')
        ++p_;
    }
    return true;
  }

  /// Skips any JSON value (an unknown field), at most kMaxDepth deep.
  bool skipValue(int depth) {
    if (depth > kMaxDepth)
      return fail("the header nests deeper than " + std::to_string(kMaxDepth) + " levels");
    if (p_ == end_)
      return fail("unexpected end of the header");
    char c = *p_;
    if (c == '"') {
      std::string ignored;
      return parseString(&ignored);
    }
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++p_;
      skipWs();
      if (consume(close))
        return true;
      for (;;) {
        skipWs();
        if (c == '{') {
          std::string ignored;
          if (!parseString(&ignored))
            return false;
          skipWs();
          if (!consume(':'))
            return fail("expected ':' after a key");
          skipWs();
        }
        if (!skipValue(depth + 1))
          return false;
        skipWs();
        if (consume(','))
          continue;
        if (consume(close))
          return true;
        return fail("malformed object or array");
      }
    }
    if (consumeWord("true") || consumeWord("false") || consumeWord("null"))
      return true;
    return skipNumber();
  }

  const char *start_, *p_, *end_;
  const std::string &source_;
  std::string *error_;
};
} // namespace

const char *safeTensorsDTypeName(DType t) {
  for (const DTypeName &d : kDTypes)
    if (d.dtype == t)
      return d.name;
  return "?";
}

bool parseSafeTensorsDType(const std::string &s, DType *out) {
  for (const DTypeName &d : kDTypes)
    if (s == d.name) {
      *out = d.dtype;
      return true;
    }
  return false;
}

bool safeTensorByteSize(const std::vector<int64_t> &shape, DType dtype, uint64_t *bytes) {
  // Element count in dimension order, never above INT64_MAX: the same rule
  // as WeightStore, so whatever parses here is accepted there.
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return false;
    if (d != 0 && n > uint64_t(INT64_MAX) / uint64_t(d))
      return false;
    n *= uint64_t(d);
  }
  if (n > uint64_t(INT64_MAX) / dtypeSize(dtype))
    return false;
  *bytes = n * dtypeSize(dtype);
  return true;
}

bool parseSafeTensors(const uint8_t *data, size_t size, const std::string &source,
                      SafeTensorsHeader *out, std::string *error) {
  *out = SafeTensorsHeader();
  if (size < 8) {
    *error = source + ": too small to be a safetensors file (" + std::to_string(size) +
             " bytes, no 8-byte header length)";
    return false;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | data[i];
  if (n > kSafeTensorsMaxHeaderBytes) {
    *error = source + ": safetensors header length " + std::to_string(n) +
             " exceeds the limit of " + std::to_string(kSafeTensorsMaxHeaderBytes) +
             " bytes (corrupt file, or not safetensors)";
    return false;
  }
  if (n > size - 8) {
    *error = source + ": safetensors header length " + std::to_string(n) +
             " runs past the end of the file (" + std::to_string(size) + " bytes; truncated?)";
    return false;
  }
  const uint8_t *h = data + 8;
  if (!validUtf8(h, size_t(n))) {
    *error = source + ": safetensors header is not valid UTF-8 (not a safetensors file?)";
    return false;
  }
  HeaderParser parser(reinterpret_cast<const char *>(h), reinterpret_cast<const char *>(h + n),
                      source, error);
  if (!parser.parse(out))
    return false;
  out->dataOffset = 8 + n;
  out->dataSize = uint64_t(size) - 8 - n;

  for (const SafeTensorInfo &t : out->tensors) {
    auto bad = [&](const std::string &msg) {
      *error = source + ": tensor '" + printable(t.name) + "': " + msg;
      return false;
    };
    std::string range =
        "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    uint64_t need;
    if (!safeTensorByteSize(t.shape, t.dtype, &need))
      return bad("shape " + shapeString(t.shape) + " of " + safeTensorsDTypeName(t.dtype) +
                 " overflows 64 bits");
    if (t.end < t.begin)
      return bad(range + " end before they begin");
    if (t.end > out->dataSize)
      return bad(range + " run past the end of the file (the data region holds " +
                 std::to_string(out->dataSize) + " bytes)");
    if (t.end - t.begin != need)
      return bad(range + " hold " + std::to_string(t.end - t.begin) + " bytes but shape " +
                 shapeString(t.shape) + " of " + safeTensorsDTypeName(t.dtype) + " needs " +
                 std::to_string(need));
  }
  return true;
}

WeightEntry SafeTensorsFile::entry(size_t i) const {
  const SafeTensorInfo &t = header.tensors[i];
  WeightEntry e;
  e.name = t.name;
  e.dtype = t.dtype;
  e.shape = t.shape;
  e.data = file->data() + header.dataOffset + t.begin;
  e.nbytes = size_t(t.end - t.begin);
  e.source = file->path();
  return e;
}

bool openSafeTensors(const std::string &path, SafeTensorsFile *out, std::string *error) {
  out->file = MappedFile::open(path, error);
  if (!out->file)
    return false;
  return parseSafeTensors(out->file->data(), out->file->size(), path, &out->header, error);
}

bool loadSafeTensors(const std::string &path, WeightStore &store, std::string *error,
                     std::vector<std::string> *added) {
  SafeTensorsFile f;
  if (!openSafeTensors(path, &f, error))
    return false;
  for (size_t i = 0; i < f.header.tensors.size(); ++i) {
    if (!store.addMapped(f.entry(i), f.file, error))
      return false;
    if (added)
      added->push_back(f.header.tensors[i].name);
  }
  return true;
}

//===----------------------------------------------------------------------===//
// Writer
//===----------------------------------------------------------------------===//

static void appendJsonString(std::string &out, const std::string &s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      static const char *hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  out += '"';
}

SafeTensorsWriter::~SafeTensorsWriter() {
  // An unfinished file would look valid up to its truncation: remove it.
  if (f_) {
    std::fclose(f_);
    std::remove(path_.c_str());
  }
}

bool SafeTensorsWriter::open(const std::string &path, const std::vector<SafeTensorSpec> &tensors,
                             const std::vector<std::pair<std::string, std::string>> &metadata,
                             std::string *error) {
  if (f_) {
    *error = path + ": writer is already open on " + path_;
    return false;
  }
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i)
        h += ',';
      appendJsonString(h, metadata[i].first);
      h += ':';
      appendJsonString(h, metadata[i].second);
    }
    h += '}';
  }
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (const SafeTensorSpec &t : tensors) {
    uint64_t bytes;
    if (t.name == "__metadata__" || !names.insert(t.name).second) {
      *error = path + ": tensor '" + printable(t.name) + "': duplicate or reserved name";
      return false;
    }
    if (!safeTensorByteSize(t.shape, t.dtype, &bytes) || offset > UINT64_MAX - bytes) {
      *error = path + ": tensor '" + printable(t.name) + "': invalid or overflowing shape " +
               shapeString(t.shape);
      return false;
    }
    if (h.size() > 1)
      h += ',';
    appendJsonString(h, t.name);
    h += ":{\"dtype\":\"";
    h += safeTensorsDTypeName(t.dtype);
    h += "\",\"shape\":" + shapeString(t.shape);
    h += ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) +
         "]}";
    offset += bytes;
  }
  h += '}';
  while (h.size() % 8)
    h += ' ';

  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) {
    *error = path + ": cannot create: " + std::strerror(errno);
    return false;
  }
  path_ = path;
  total_ = offset;
  written_ = 0;
  dataOffset_ = 8 + h.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  if (std::fwrite(len, 1, 8, f_) != 8 || std::fwrite(h.data(), 1, h.size(), f_) != h.size()) {
    *error = path + ": write failed: " + std::strerror(errno);
    return false;
  }
  return true;
}

bool SafeTensorsWriter::append(const void *bytes, size_t n, std::string *error) {
  if (!f_) {
    *error = "safetensors writer: append without open";
    return false;
  }
  if (n > total_ - written_) {
    *error = path_ + ": more tensor bytes than the header declares";
    return false;
  }
  if (n && std::fwrite(bytes, 1, n, f_) != n) {
    *error = path_ + ": write failed: " + std::strerror(errno);
    return false;
  }
  written_ += n;
  return true;
}

bool SafeTensorsWriter::close(std::string *error) {
  if (!f_) {
    *error = "safetensors writer: close without open";
    return false;
  }
  if (written_ != total_) {
    *error = path_ + ": wrote " + std::to_string(written_) + " of " + std::to_string(total_) +
             " declared tensor bytes";
    return false; // the destructor removes the partial file
  }
  std::FILE *f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) {
    *error = path_ + ": write failed: " + std::strerror(errno);
    std::remove(path_.c_str());
    return false;
  }
  return true;
}

bool writeSafeTensors(const std::string &path, const std::vector<SafeTensorData> &tensors,
                      const std::vector<std::pair<std::string, std::string>> &metadata,
                      std::string *error) {
  std::vector<SafeTensorSpec> specs;
  specs.reserve(tensors.size());
  for (const SafeTensorData &t : tensors)
    specs.push_back(t.spec);
  SafeTensorsWriter w;
  if (!w.open(path, specs, metadata, error))
    return false;
  for (const SafeTensorData &t : tensors) {
    uint64_t bytes = 0;
    safeTensorByteSize(t.spec.shape, t.spec.dtype, &bytes); // checked by open()
    if (bytes && !t.data) {
      *error = path + ": tensor '" + printable(t.spec.name) + "' has no data";
      return false;
    }
    if (!w.append(t.data, size_t(bytes), error))
      return false;
  }
  return w.close(error);
}

} // namespace qopt
