//===- BenchUtil.cuh - timing and HBM read helpers of the GPU benchmarks ---===//
//
// What gemm_bench.cu and attention_bench.cu both need, written once so that
// their timings and their HBM read reference (the denominator of pct_hbm /
// pct_of_read) are measured the same way: a CUDA call check that exits, CUDA
// event timing after warm-up calls, and a streaming read of a large buffer.
// Each benchmark defines qbench::kBenchName, the prefix of its error lines.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_BENCH_GPU_BENCHUTIL_CUH
#define QOPT_BENCH_GPU_BENCHUTIL_CUH

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace qbench {

/// "gemm_bench", "attention_bench": defined by each benchmark.
extern const char *const kBenchName;

} // namespace qbench

#define CHECK_CUDA(x)                                                                            \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s: %s: %s\n", qbench::kBenchName, #x, cudaGetErrorString(e_));     \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace qbench {

inline void *deviceAlloc(size_t bytes) {
  void *p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  return p;
}

/// Mean microseconds of one call(i), i = 0 .. iters - 1, timed with CUDA
/// events on the default stream after call(0 .. warmup - 1). The index lets
/// a benchmark rotate over copies of its inputs.
template <typename F> float timeUs(F &&call, int iters, int warmup) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i)
    call(i);
  CHECK_CUDA(cudaEventRecord(a));
  for (int i = 0; i < iters; ++i)
    call(i);
  CHECK_CUDA(cudaEventRecord(b));
  CHECK_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms * 1000.f / iters;
}

static __global__ void readKernel(const uint4 *p, size_t n, uint32_t *sink) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) // never true in practice; keeps the loads
    *sink = acc;
}

/// The HBM read reference: streams `bytes` (a multiple of 16, filled by the
/// caller) at `buf` 20 times (after `warmup` passes) with 8 blocks of 512
/// threads per SM, prints the {"bench":"hbm_read",...} line, returns GB/s.
inline double measureRead(const void *buf, size_t bytes, int warmup) {
  auto *sink = static_cast<uint32_t *>(deviceAlloc(4));
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const float us = timeUs(
      [&](int) { readKernel<<<sms * 8, 512>>>(static_cast<const uint4 *>(buf), bytes / 16, sink); },
      20, warmup);
  const double gbps = bytes / (us * 1e3);
  std::printf("{\"bench\":\"hbm_read\",\"bytes\":%zu,\"time_us\":%.2f,\"GBps\":%.1f}\n", bytes, us,
              gbps);
  cudaFree(sink);
  return gbps;
}

/// The first line of every benchmark's output: the device, or a "skipped"
/// line (and false) where there is none.
inline bool announceDevice() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("{\"bench\":\"skipped\",\"reason\":\"no CUDA device\"}\n");
    return false;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"bench\":\"device\",\"name\":\"%s\",\"sm\":%d%d,\"sms\":%d,\"l2_bytes\":%d}\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize);
  return true;
}

} // namespace qbench

#endif
