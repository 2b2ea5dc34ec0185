//===- HFTestUtil.h - helpers for the HF import tests ---------*- C++ -*-===//
#ifndef QOPT_TEST_IMPORT_HF_HFTESTUTIL_H
#define QOPT_TEST_IMPORT_HF_HFTESTUTIL_H

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>

namespace qopt::test {

/// A fresh directory under $TMPDIR, removed with its contents at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    const char *base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qopt-hf-XXXXXX";
    if (char *p = mkdtemp(tmpl.data()))
      path = p;
  }
  ~TempDir() {
    if (!path.empty())
      std::system(("rm -rf '" + path + "'").c_str());
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
};

inline void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool fileExists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

} // namespace qopt::test

#endif
