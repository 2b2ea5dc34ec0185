//===- Json.h - checked access to tokenizer.json fields --------*- C++ -*-===//
//
// tokenizer.json comes from users: every field is read through these helpers,
// which throw LoadError naming the JSON path and what was expected instead of
// letting nlohmann's type errors (or a crash) escape. Only the loader catches
// LoadError; the public API turns it into an error string.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_TOKENIZER_JSON_H
#define QOPT_RT_TOKENIZER_JSON_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace qrt::tok {

using Json = nlohmann::json;

/// A problem in the tokenizer file; the message has no file name (the
/// loader prefixes it).
class LoadError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Short description of a JSON value's type, for messages.
const char *jsonTypeName(const Json &j);

/// `obj[key]` where obj must be an object; nullptr if the key is absent.
const Json *field(const Json &obj, const char *key, const std::string &path);

/// Required string field.
std::string getString(const Json &obj, const char *key,
                      const std::string &path);
/// Optional string field: `dflt` when absent or null.
std::string getStringOr(const Json &obj, const char *key,
                        const std::string &path, const std::string &dflt);
/// Optional bool field: `dflt` when absent or null.
bool getBoolOr(const Json &obj, const char *key, const std::string &path,
               bool dflt);
/// Optional integer field in [lo, hi]: `dflt` when absent or null.
int64_t getIntOr(const Json &obj, const char *key, const std::string &path,
                 int64_t lo, int64_t hi, int64_t dflt);
/// Required integer field in [lo, hi].
int64_t getInt(const Json &obj, const char *key, const std::string &path,
               int64_t lo, int64_t hi);
/// Integer value in [lo, hi].
int64_t asInt(const Json &v, const std::string &path, int64_t lo,
              int64_t hi);
/// Required array field.
const Json &getArray(const Json &obj, const char *key,
                     const std::string &path);
/// The component's "type" tag (required string).
std::string getType(const Json &obj, const std::string &path);

/// Largest id accepted anywhere: ids index dense tables, so a hostile
/// "id": 4000000000 must be refused rather than allocated.
inline constexpr int64_t kMaxTokenId = (int64_t(1) << 24) - 1;

} // namespace qrt::tok

#endif // QOPT_RT_TOKENIZER_JSON_H
