//===- Options.h - qrun's command line -----------------------------------===//
#ifndef QOPT_TOOLS_QRUN_OPTIONS_H
#define QOPT_TOOLS_QRUN_OPTIONS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qrun {

/// Everything qrun can be told.
struct Options {
  std::string artifact;
  bool help = false;
  // Single prompt.
  std::optional<std::string> prompt;
  std::optional<std::vector<int32_t>> tokenIds;
  int32_t maxTokens = 64;
  bool printIds = false;
  bool ignoreEos = false;
  // Sampling (greedy by default).
  float temperature = 0.0f;
  int32_t topK = 0;
  float topP = 1.0f;
  std::optional<uint64_t> seed;
  // Many prompts.
  std::string promptsPath;
  int32_t concurrency = 1;
  // Perplexity.
  std::string perplexityPath;
  int32_t ctx = 256, chunks = 40;
  // Resources.
  int threads = 0;
  int64_t kvMemMiB = 0; ///< 0: sized from the need, capped at 1 GiB
  int32_t maxModelLen = 0;
  /// Quantized GEMMs quantize their inputs to int8 per 32 columns (the
  /// fast path; qrun --perplexity stays within 0.01% of the reference on
  /// austen int4); --fp32-act computes what the reference executor does.
  bool int8Activations = true;
  bool prefixCaching = true;
  /// "cpu", "cuda", or "" (the artifact's target decides).
  std::string device;
  /// --device cuda: share of the GPU's free memory for the KV pool.
  float gpuMemoryUtilization = 0.9f;
  /// --device cuda: pure decode steps replayed as CUDA graphs (--no-cuda-graphs: off).
  bool cudaGraphs = true;
  /// --device cuda: sample on the host from copied-back logits, not on the GPU.
  bool hostSampling = false;
};

/// Parses argv; false with *error (one line) on a bad flag or value.
bool parseOptions(int argc, char **argv, Options *o, std::string *error);
/// The --help text.
const char *usage();

} // namespace qrun

#endif
