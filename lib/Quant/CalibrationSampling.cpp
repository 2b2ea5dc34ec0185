//===- CalibrationSampling.cpp - calibration windows from text ------===//
//
// GPTQ's recipe: tokenize the text once and cut `samples` windows of
// `seqlen` tokens at random offsets. The generator is splitmix64 with a
// multiply-high range reduction, not a std:: distribution, so the same seed
// draws the same windows with every compiler and standard library.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/Calibration.h"

#include "qopt-rt/tokenizer.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>

namespace qopt::quant {

namespace {

/// splitmix64 (Steele, Lea, Flood 2014): tiny, full-period, and fixed.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n): the high half of a 64x64-bit product (Lemire).
  uint64_t below(uint64_t n) {
    return uint64_t((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

/// The files `spec` names: itself when it exists; else its comma-separated
/// parts; a directory stands for its *.txt files in name order.
bool expandFiles(const std::string &spec, std::vector<std::string> *files,
                 std::string *error) {
  std::vector<std::string> parts;
  if (spec.find(',') == std::string::npos || llvm::sys::fs::exists(spec)) {
    parts.push_back(spec);
  } else {
    llvm::SmallVector<llvm::StringRef> pieces;
    llvm::StringRef(spec).split(pieces, ',', -1, /*KeepEmpty=*/false);
    for (llvm::StringRef p : pieces)
      parts.push_back(p.trim().str());
  }
  for (const std::string &p : parts) {
    if (!llvm::sys::fs::is_directory(p)) {
      files->push_back(p);
      continue;
    }
    std::vector<std::string> inDir;
    std::error_code ec;
    for (llvm::sys::fs::directory_iterator it(p, ec), end; it != end && !ec; it.increment(ec))
      if (llvm::sys::path::extension(it->path()) == ".txt" &&
          !llvm::sys::fs::is_directory(it->path()))
        inDir.push_back(it->path());
    if (ec) {
      *error = p + ": cannot list the calibration directory (" + ec.message() + ")";
      return false;
    }
    if (inDir.empty()) {
      *error = p + ": the calibration directory has no .txt files";
      return false;
    }
    std::sort(inDir.begin(), inDir.end());
    files->insert(files->end(), inDir.begin(), inDir.end());
  }
  if (files->empty()) {
    *error = "calibration: no calibration text given (-calib=FILE)";
    return false;
  }
  return true;
}

} // namespace

bool sampleCalibration(const qrt::Tokenizer &tokenizer, const CalibrationOptions &options,
                       std::vector<std::vector<int32_t>> *samples, std::string *error) {
  if (options.samples <= 0 || options.seqlen <= 0) {
    *error = "calibration: -calib-samples (" + std::to_string(options.samples) +
             ") and -calib-seqlen (" + std::to_string(options.seqlen) +
             ") must be positive";
    return false;
  }
  if (options.file.empty()) {
    *error = "calibration: no calibration text given (-calib=FILE)";
    return false;
  }
  std::vector<std::string> files;
  if (!expandFiles(options.file, &files, error))
    return false;

  // Documents are joined with a blank line between them, so no window
  // starts mid-word of one file and ends in the next without a break.
  std::vector<int32_t> separator = tokenizer.encode("\n\n", /*addSpecial=*/false);
  std::vector<int32_t> tokens;
  for (size_t f = 0; f < files.size(); ++f) {
    auto buffer = llvm::MemoryBuffer::getFile(files[f], /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!buffer) {
      *error = files[f] + ": cannot read the calibration text (" +
               buffer.getError().message() + ")";
      return false;
    }
    llvm::StringRef text = (*buffer)->getBuffer();
    if (text.trim().empty()) {
      *error = files[f] + ": the calibration text is empty";
      return false;
    }
    std::vector<int32_t> ids = tokenizer.encode(text, /*addSpecial=*/false);
    if (ids.empty()) {
      *error = files[f] + ": the calibration text encodes to no tokens";
      return false;
    }
    if (!tokens.empty())
      tokens.insert(tokens.end(), separator.begin(), separator.end());
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  const int64_t total = int64_t(tokens.size());
  if (total < options.seqlen) {
    std::string names = files.size() == 1 ? files[0]
                                          : std::to_string(files.size()) + " calibration files";
    *error = names + ": the calibration text has " + std::to_string(total) +
             " tokens, fewer than one window of " + std::to_string(options.seqlen) +
             " (-calib-seqlen); give a longer text or a shorter -calib-seqlen";
    return false;
  }

  SplitMix64 rng{options.seed};
  const uint64_t starts = uint64_t(total - options.seqlen + 1);
  samples->clear();
  samples->reserve(size_t(options.samples));
  for (int64_t s = 0; s < options.samples; ++s) {
    int64_t begin = int64_t(rng.below(starts));
    samples->emplace_back(tokens.begin() + begin, tokens.begin() + begin + options.seqlen);
  }
  return true;
}

} // namespace qopt::quant
