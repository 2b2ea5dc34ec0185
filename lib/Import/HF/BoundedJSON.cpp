//===- BoundedJSON.cpp - llvm::json on untrusted files ----------------===//
#include "BoundedJSON.h"

#include "llvm/Support/Error.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace qopt {

/// The deepest bracket nesting of `text`, ignoring brackets inside strings.
/// Malformed text gets some number; the real parser reports its errors.
static int nestingDepth(llvm::StringRef text) {
  int depth = 0, deepest = 0;
  bool inString = false, escaped = false;
  for (char c : text) {
    if (inString) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"')
      inString = true;
    else if (c == '{' || c == '[')
      deepest = std::max(deepest, ++depth);
    else if (c == '}' || c == ']')
      --depth;
  }
  return deepest;
}

std::optional<llvm::json::Value> parseBoundedJSON(llvm::StringRef text,
                                                  const std::string &source,
                                                  std::string *error) {
  if (nestingDepth(text) > kMaxJSONDepth) {
    *error = source + ": JSON nests deeper than " + std::to_string(kMaxJSONDepth) + " levels";
    return std::nullopt;
  }
  llvm::Expected<llvm::json::Value> v = llvm::json::parse(text);
  if (!v) {
    *error = source + ": invalid JSON: " + llvm::toString(v.takeError());
    return std::nullopt;
  }
  return std::move(*v);
}

std::optional<llvm::json::Value> readBoundedJSONFile(const std::string &path, size_t maxBytes,
                                                     std::string *error) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = path + ": not a regular file";
    return std::nullopt;
  }
  if (uint64_t(st.st_size) > maxBytes) {
    *error = path + ": " + std::to_string(st.st_size) + " bytes is larger than the " +
             std::to_string(maxBytes) + "-byte limit for this file";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > maxBytes) { // the file grew since stat
    *error = path + ": larger than the " + std::to_string(maxBytes) + "-byte limit";
    return std::nullopt;
  }
  return parseBoundedJSON(text, path, error);
}

} // namespace qopt
