//===- attention_bench.cu - paged decode / prefill attention timings -------===//
//
// Prints one JSON object per line:
//   {"bench":"device",...}, {"bench":"hbm_read",...}  the bandwidth measured
//       in this run (a streaming read of 2 GiB), the reference for pct_of_read;
//   {"bench":"attention","name":"paged_decode","kv":"bf16"|"fp8_e4m3",
//    "tables":"contiguous"|"shuffled", "shape":..., "time_us", "bytes" (K/V
//    bytes read), "flops", "GBps", "TFLOPs", "pct_of_read"}
//   {"bench":"attention","name":"paged_prefill","kernel":"tensor_core"|"fma",
//    "kv", "batch", "tokens" (new tokens per sequence, the whole context),
//    ..., "time_us", "flops" (causal: half the score matrix), "TFLOPs"}
// The decode shape is the issue's: batch 32 x context 4096, 32 query / 8 KV
// heads, head_dim 128. Prefill: batch 4 x 2048 new tokens at the same
// heads, bf16 KV through both kernels (torch_attention.py times SDPA's
// causal attention at that shape), plus fp8 KV (FMA kernel only). Contiguous tables give the layout torch's SDPA reads
// (torch_attention.py), shuffled ones a fragmented pool. The pool (256 MiB
// fp8 to 512 MiB bf16) is many times L2, so every step reads HBM.
//
//===----------------------------------------------------------------------===//
#include "BenchUtil.cuh"
#include "qopt-cuda/Attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

const char *const qbench::kBenchName = "attention_bench";

namespace {

using qbench::deviceAlloc;
using qbench::timeUs;

/// Warm-up calls before each timing.
constexpr int kWarmup = 3;

/// Small finite values of each pool type from a hash of the index (random
/// bits would include NaN / inf codes).
__global__ void fillPool(uint8_t *p, size_t n, int elemBytes, uint32_t salt) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ salt;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    if (elemBytes == 2) // bf16 in about [-2, 2]: exponent 120..127
      reinterpret_cast<uint16_t *>(p)[i] = uint16_t(0x3c00u | (h & 0x83ffu));
    else // fp8 / int8: codes without the NaN pattern
      p[i] = uint8_t(h & 0xb7u);
  }
}

double measureRead() {
  const size_t bytes = size_t(2) << 30;
  auto *buf = static_cast<uint8_t *>(deviceAlloc(bytes));
  fillPool<<<4096, 256>>>(buf, bytes, 1, 7);
  const double gbps = qbench::measureRead(buf, bytes, kWarmup);
  cudaFree(buf);
  return gbps;
}

struct Setup {
  int batch, context, heads, kvHeads, headDim;
};

/// A pool holding `batch` sequences of `context` tokens, with contiguous or
/// shuffled block tables, plus device copies of the sequence arrays.
struct BenchPool {
  qcuda::PagedKV kv;
  qcuda::PagedSequences seqs;
  std::vector<void *> owned;
  BenchPool(const Setup &s, qcuda::KVDType t, bool shuffled, std::vector<int32_t> contexts) {
    const int bs = 16;
    std::vector<int32_t> start{0}, table;
    for (int32_t c : contexts) {
      for (int i = 0; i < (c + bs - 1) / bs; ++i)
        table.push_back(int32_t(table.size()));
      start.push_back(int32_t(table.size()));
    }
    if (shuffled)
      std::shuffle(table.begin(), table.end(), std::mt19937(5));
    kv.numBlocks = int32_t(table.size());
    kv.blockSize = bs;
    kv.kvHeads = s.kvHeads;
    kv.headDim = s.headDim;
    kv.dtype = t;
    const size_t elems = size_t(kv.numBlocks) * bs * s.kvHeads * s.headDim;
    const int eb = int(qcuda::kvElementBytes(t));
    kv.k = alloc(elems * eb);
    kv.v = alloc(elems * eb);
    fillPool<<<4096, 256>>>(static_cast<uint8_t *>(kv.k), elems, eb, 1);
    fillPool<<<4096, 256>>>(static_cast<uint8_t *>(kv.v), elems, eb, 2);
    std::vector<float> scales(s.kvHeads, 0.02f);
    kv.kScale = upload(scales);
    kv.vScale = upload(scales);
    seqs.numSeqs = int32_t(contexts.size());
    seqs.contextLens = upload(contexts);
    seqs.blockTableStart = upload(start);
    seqs.blockTable = upload(table);
    seqs.maxContextLen = *std::max_element(contexts.begin(), contexts.end());
  }
  ~BenchPool() {
    for (void *p : owned)
      cudaFree(p);
  }
  void *alloc(size_t bytes) {
    owned.push_back(deviceAlloc(bytes));
    return owned.back();
  }
  template <class T> T *upload(const std::vector<T> &v) {
    T *p = static_cast<T *>(alloc(v.size() * sizeof(T)));
    CHECK_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }
};

void benchDecode(const Setup &s, qcuda::KVDType t, bool shuffled, double readGBps) {
  BenchPool pool(s, t, shuffled, std::vector<int32_t>(s.batch, s.context));
  qcuda::AttentionHeads heads;
  heads.numHeads = s.heads;
  heads.qStride = heads.outStride = int64_t(s.heads) * s.headDim;
  void *q = pool.alloc(size_t(s.batch) * heads.qStride * 2);
  void *out = pool.alloc(size_t(s.batch) * heads.outStride * 2);
  CHECK_CUDA(cudaMemset(q, 0x3c, size_t(s.batch) * heads.qStride * 2));
  const size_t wsBytes = qcuda::decodeAttentionWorkspaceBytes(pool.kv, pool.seqs, heads);
  void *ws = pool.alloc(wsBytes);
  std::string err;
  if (!qcuda::decodeAttention(pool.kv, pool.seqs, heads, q, out, ws, wsBytes, nullptr, &err)) {
    std::fprintf(stderr, "attention_bench: %s\n", err.c_str());
    std::exit(1);
  }
  const float us = timeUs(
      [&](int) {
        qcuda::decodeAttention(pool.kv, pool.seqs, heads, q, out, ws, wsBytes, nullptr, &err);
      },
      50, kWarmup);
  const double bytes = 2.0 * s.batch * double(s.context) * s.kvHeads * s.headDim *
                       qcuda::kvElementBytes(t);
  const double flops = 4.0 * s.batch * double(s.heads) * s.context * s.headDim;
  std::printf("{\"bench\":\"attention\",\"name\":\"paged_decode\",\"kv\":\"%s\",\"tables\":\"%s\","
              "\"batch\":%d,\"context\":%d,\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,"
              "\"time_us\":%.2f,\"bytes\":%.0f,\"flops\":%.0f,\"GBps\":%.1f,\"TFLOPs\":%.3f,"
              "\"pct_of_read\":%.1f}\n",
              t == qcuda::KVDType::BF16 ? "bf16" : "fp8_e4m3", shuffled ? "shuffled" : "contiguous",
              s.batch, s.context, s.heads, s.kvHeads, s.headDim, us, bytes, flops,
              bytes / (us * 1e3), flops / (us * 1e6), 100.0 * bytes / (us * 1e3) / readGBps);
}

/// `batch` sequences of `tokens` new tokens each (no cached context).
void benchPrefill(int batch, int tokens, const Setup &s, qcuda::KVDType t,
                  qcuda::PrefillKernel kernel) {
  BenchPool pool(s, t, true, std::vector<int32_t>(batch, tokens));
  qcuda::AttentionHeads heads;
  heads.numHeads = s.heads;
  heads.qStride = heads.outStride = int64_t(s.heads) * s.headDim;
  const size_t rows = size_t(batch) * tokens;
  void *q = pool.alloc(rows * heads.qStride * 2);
  void *out = pool.alloc(rows * heads.outStride * 2);
  CHECK_CUDA(cudaMemset(q, 0x3c, rows * heads.qStride * 2));
  std::vector<int32_t> starts(batch + 1);
  for (int i = 0; i <= batch; ++i)
    starts[i] = i * tokens;
  const int32_t *qs = pool.upload(starts);
  std::string err;
  auto call = [&] {
    return qcuda::prefillAttention(pool.kv, pool.seqs, qs, tokens, heads, q, out, nullptr, &err,
                                   kernel);
  };
  if (!call()) {
    std::fprintf(stderr, "attention_bench: %s\n", err.c_str());
    std::exit(1);
  }
  const float us = timeUs([&](int) { call(); }, 10, kWarmup);
  // Causal: half of the T x T score matrix, QK^T and PV, per sequence.
  const double flops = 2.0 * batch * s.heads * double(tokens) * tokens * s.headDim;
  std::printf("{\"bench\":\"attention\",\"name\":\"paged_prefill\",\"kernel\":\"%s\","
              "\"kv\":\"%s\",\"batch\":%d,\"tokens\":%d,\"heads\":%d,\"kv_heads\":%d,"
              "\"head_dim\":%d,\"time_us\":%.2f,\"flops\":%.0f,\"TFLOPs\":%.3f}\n",
              kernel == qcuda::PrefillKernel::Fma ? "fma" : "tensor_core",
              t == qcuda::KVDType::BF16 ? "bf16" : "fp8_e4m3", batch, tokens, s.heads, s.kvHeads,
              s.headDim, us, flops, flops / (us * 1e6));
}

} // namespace

int main() {
  if (!qbench::announceDevice())
    return 0;
  const double read = measureRead();
  const Setup decode{32, 4096, 32, 8, 128};
  for (qcuda::KVDType t : {qcuda::KVDType::BF16, qcuda::KVDType::FP8E4M3})
    for (bool shuffled : {false, true})
      benchDecode(decode, t, shuffled, read);
  for (qcuda::PrefillKernel k : {qcuda::PrefillKernel::TensorCore, qcuda::PrefillKernel::Fma})
    benchPrefill(4, 2048, decode, qcuda::KVDType::BF16, k);
  benchPrefill(4, 2048, decode, qcuda::KVDType::FP8E4M3, qcuda::PrefillKernel::Fma);
  return 0;
}
