//===- BoundedJSON.h - llvm::json on untrusted files ----------*- C++ -*-===//
//
// llvm::json::parse recurses once per nesting level and has no depth limit:
// "[[[[..." a few hundred thousand deep overflows the stack. Files a user
// downloads (config.json, the shard index) go through this wrapper, which
// caps the file size and the nesting depth before parsing.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_IMPORT_HF_BOUNDEDJSON_H
#define QOPT_LIB_IMPORT_HF_BOUNDEDJSON_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/JSON.h"

#include <optional>
#include <string>

namespace qopt {

/// Deepest nesting accepted in a JSON file read by the importer.
constexpr int kMaxJSONDepth = 64;

/// Parses `text` (named `source` in errors). Fails with "<source>: <why>" if
/// it nests deeper than kMaxJSONDepth or is not valid JSON.
std::optional<llvm::json::Value> parseBoundedJSON(llvm::StringRef text,
                                                  const std::string &source,
                                                  std::string *error);

/// Reads and parses a JSON file of at most `maxBytes` bytes.
std::optional<llvm::json::Value> readBoundedJSONFile(const std::string &path, size_t maxBytes,
                                                     std::string *error);

} // namespace qopt

#endif
