//===- decode_bench.cpp - decode steps of the CUDA model executor ----------===//
//
// Times CudaModelExecutor::executeAndSample on decode steps (one new token
// per sequence) of a GPU artifact, normally synth_gpu_artifact.py's
// Llama-3-8B INT4 with random weights: batch 1..64 sequences at a fixed
// context, the whole step as qrun pays it (host validation, one upload, the
// bucket's CUDA graph, lm_head for every sequence, greedy ids drawn on the
// device and copied back). One JSON object per line: time_us per step,
// tokens/s, bytes = weights + the KV read, GB/s against that. The KV pool's
// contents are whatever the allocation holds: the attention reads the same
// bytes either way. --graphs 0 runs the same padded steps kernel by kernel.
//   decode_bench ART.qopt [--batches 1,8,16,32,64] [--context 1024] [--steps 20]
//                [--graphs 1]
//
//===----------------------------------------------------------------------===//
#include "CudaModelExecutor.h"

#include "qopt-rt/serving/Executor.h"
#include "qopt-rt/serving/StepBatch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: decode_bench ART.qopt [--batches 1,8,32,64] [--context N] "
                         "[--steps N] [--graphs 0|1]\n");
    return 1;
  }
  std::string path = argv[1], batchesArg = "1,8,16,32,64";
  int context = 1024, steps = 20;
  bool graphs = true;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--batches")
      batchesArg = argv[i + 1];
    else if (a == "--context")
      context = std::atoi(argv[i + 1]);
    else if (a == "--steps")
      steps = std::atoi(argv[i + 1]);
    else if (a == "--graphs")
      graphs = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr, "decode_bench: unknown option %s\n", a.c_str());
      return 1;
    }
  }
  std::vector<int> batches;
  std::stringstream ss(batchesArg);
  for (std::string tok; std::getline(ss, tok, ',');)
    batches.push_back(std::atoi(tok.c_str()));
  int maxBatch = 1;
  for (int b : batches)
    maxBatch = std::max(maxBatch, b);
  if (context < 1 || steps < 2 || batches.empty()) {
    std::fprintf(stderr, "decode_bench: bad --context / --steps / --batches\n");
    return 1;
  }

  std::string error;
  auto artifact = qrt::Artifact::openForCuda(path, &error);
  if (!artifact) {
    std::fprintf(stderr, "decode_bench: %s\n", error.c_str());
    return 1;
  }
  const int blockSize = 16;
  const int perSeq = (context + steps + 2 + blockSize - 1) / blockSize;
  qcuda::CudaExecutorOptions opt;
  opt.maxBlocks = int64_t(maxBatch) * perSeq + 1;
  opt.maxBatchedTokens = maxBatch;
  // As qrun runs it: decode steps padded to a bucket and replayed as CUDA
  // graphs (they need max_model_len and the largest batch), greedy tokens
  // drawn on the device (only the ids come back).
  opt.maxModelLen = perSeq * blockSize;
  opt.maxNumSeqs = maxBatch;
  opt.cudaGraphs = graphs;
  opt.deviceSampling = true;
  auto t0 = std::chrono::steady_clock::now();
  auto exec = qcuda::CudaModelExecutor::create(*artifact, opt, &error);
  if (!exec) {
    std::fprintf(stderr, "decode_bench: %s\n", error.c_str());
    return 1;
  }
  const double loadS =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "decode_bench: %s on %s: %.2f GiB of weights uploaded in %.1f s\n",
               path.c_str(), exec->deviceName().c_str(), double(exec->weightBytes()) / (1 << 30),
               loadS);

  const qrt::ArtifactConfig &c = artifact->config();
  // KV bytes one token's attention reads per layer (bf16 K and V).
  const double kvPerTokenAll = 2.0 * double(c.numKvHeads * c.headDim) * 2.0 * double(c.numLayers);
  // Parameters of the layers + lm_head (the embedding is a gather).
  const double params =
      double(c.numLayers) * double(c.hiddenSize) *
          double((c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim +
                 3 * c.intermediateSize) +
      double(c.vocabSize) * double(c.hiddenSize);
  const double embeddingBytes = double(c.vocabSize) * double(c.hiddenSize) * 2.0;
  const double weightRead = double(exec->weightBytes()) - embeddingBytes;

  std::vector<int32_t> tokens;
  std::vector<qrt::serving::SampleSpec> greedy;
  for (int B : batches) {
    tokens.assign(size_t(B), -1);
    greedy.assign(size_t(B), qrt::serving::SampleSpec());
    for (auto &g : greedy)
      g.params.temperature = 0.f;
    double total = 0;
    int timed = 0;
    for (int s = 0; s < steps; ++s) {
      qrt::serving::StepBatch b;
      b.blockSize = blockSize;
      const int ctx = context + s + 1;
      for (int i = 0; i < B; ++i) {
        b.tokenIds.push_back((i * 7919 + s * 104729) % exec->vocabSize());
        b.positions.push_back(ctx - 1);
        const int first = i * perSeq;
        b.slotMapping.push_back(int64_t(first) * blockSize + ctx - 1);
        b.seqIds.push_back(uint64_t(i));
        b.queryStart.push_back(i);
        b.contextLens.push_back(ctx);
        b.blockTableStart.push_back(int32_t(b.blockTable.size()));
        for (int k = 0; k < (ctx + blockSize - 1) / blockSize; ++k)
          b.blockTable.push_back(first + k);
        b.sampleIndices.push_back(i);
      }
      b.queryStart.push_back(B);
      b.blockTableStart.push_back(int32_t(b.blockTable.size()));
      auto t = std::chrono::steady_clock::now();
      if (!exec->executeAndSample(b, greedy, tokens.data(), &error)) {
        std::fprintf(stderr, "decode_bench: batch %d step %d: %s\n", B, s, error.c_str());
        return 1;
      }
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count();
      if (s >= 2) { // the first steps grow scratch and warm the caches
        total += us;
        ++timed;
      }
    }
    const double us = total / timed;
    const double bytes = weightRead + double(B) * double(context + steps / 2) * kvPerTokenAll;
    const double flops = 2.0 * params * double(B);
    std::printf("{\"name\": \"decode_step\", \"graphs\": %s, \"shape\": \"%s B=%d ctx=%d\", "
                "\"batch\": %d, "
                "\"context\": %d, \"time_us\": %.1f, \"tokens_per_s\": %.1f, \"bytes\": %.0f, "
                "\"flops\": %.0f, \"GB/s\": %.1f, \"TFLOP/s\": %.2f}\n",
                graphs ? "true" : "false",
                c.numLayers == 32 && c.hiddenSize == 4096 ? "llama3-8b-int4" : "model", B,
                context, B, context, us, double(B) * 1e6 / us, bytes, flops, bytes / us / 1e3,
                flops / us / 1e6);
    std::fflush(stdout);
  }
  return 0;
}
