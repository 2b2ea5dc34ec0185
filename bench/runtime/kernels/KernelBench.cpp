//===- KernelBench.cpp - quantized GEMV/GEMM against the read bandwidth ---===//
//
// One run measures, with 2 threads:
//  (a) the machine's memory read bandwidth: a streaming sum over a large
//      buffer (2 GiB, or a third of the free memory if that is less),
//  (b) INT4 g128 GEMV (M = 1) and M = 16 at the Llama-3-8B shapes
//      N x K = 4096 x 4096, 14336 x 4096, 4096 x 14336, with the weights
//      rotated over enough copies (>= 384 MiB in all, 12x the L3 here) that
//      no call finds its weights in cache,
//  (c) the float-weight GEMM (floatGemm) at a Llama-3.2-1B tied lm_head,
//      bf16 128256 x 2048 (525 MB, larger than any cache by itself), M = 1
//      and 16, next to the executor's former loop ("baseline"),
// and reports for (b) and (c) the weight bytes one call reads (codes +
// scales + zeros) / time as GB/s and as a share of (a): "bw%" is the median
// over rounds of (GEMV rate / bandwidth measured just before, in the same
// round), "bw%max" the GEMV rate against the best bandwidth seen so far in
// the run (conservative). See BM_QGemm for why rounds.
//
//   qrt_kernel_bench [--benchmark_filter=...] [google benchmark flags]
//
//===----------------------------------------------------------------------===//
#include "FloatGemmBaseline.h"

#include "qopt-rt/half.h"
#include "qopt-rt/kernels/FloatGemm.h"
#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/Specialized.h"
#include "qopt/CodeGen/KernelLibrary.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace qrt::kernels;

namespace {

constexpr int kThreads = 2;
/// Rounds (bandwidth pass + ~50 ms of calls) per GEMV/GEMM benchmark.
constexpr int kRounds = 9;
constexpr size_t kMiB = size_t(1) << 20;

ThreadPool &pool() {
  static ThreadPool p(kThreads);
  return p;
}

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct FreeDeleter {
  void operator()(uint8_t *p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

Buffer allocate(size_t bytes) {
  auto *p = static_cast<uint8_t *>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
  if (!p) {
    std::fprintf(stderr, "qrt_kernel_bench: cannot allocate %zu bytes\n", bytes);
    std::exit(1);
  }
  return Buffer(p);
}

/// Best read bandwidth measured so far in this run (bytes/s).
double gBandwidth = 0.0;

//===--- (a) read bandwidth -----------------------------------------------===//

struct BigBuffer {
  Buffer data;
  size_t bytes = 0;
};

BigBuffer &bigBuffer() {
  static BigBuffer b = [] {
    size_t want = size_t(2048) * kMiB;
    const long pages = sysconf(_SC_AVPHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && pageSize > 0)
      want = std::min(want, size_t(pages) * size_t(pageSize) / 3 / (64 * kMiB) * (64 * kMiB));
    want = std::max(want, 256 * kMiB);
    BigBuffer out;
    out.data = allocate(want);
    out.bytes = want;
    // Real pages with data (not the shared zero page), written by both
    // threads so neither owns all of it.
    pool().run(kThreads, [&](int w) {
      std::memset(out.data.get() + w * (want / kThreads), 1 + w, want / kThreads);
    });
    return out;
  }();
  return b;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sumAvx2(const uint8_t *p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i *>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i *>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i *>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i *>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i *>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

uint64_t sumPortable(const uint8_t *p, size_t n) {
  uint64_t a[4] = {0, 0, 0, 0};
  for (size_t i = 0; i + 32 <= n; i += 32)
    for (int j = 0; j < 4; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      a[j] += v;
    }
  return a[0] + a[1] + a[2] + a[3];
}

uint64_t streamSum(const uint8_t *p, size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2"))
    return sumAvx2(p, n);
#endif
  return sumPortable(p, n);
}

/// Seconds for one streaming pass over the whole buffer with 2 threads.
double bandwidthPass() {
  BigBuffer &b = bigBuffer();
  const size_t part = b.bytes / kThreads;
  std::atomic<uint64_t> total{0};
  const auto t0 = Clock::now();
  pool().run(kThreads, [&](int w) { total += streamSum(b.data.get() + w * part, part); });
  const double seconds = secondsSince(t0);
  benchmark::DoNotOptimize(total.load());
  return seconds;
}

void BM_ReadBandwidth(benchmark::State &state) {
  BigBuffer &b = bigBuffer();
  double seconds = 0.0;
  int64_t iters = 0;
  for (auto _ : state) {
    seconds += bandwidthPass();
    ++iters;
  }
  const double bw = double(b.bytes) * double(iters) / seconds;
  gBandwidth = std::max(gBandwidth, bw);
  state.counters["GB/s"] = bw / 1e9;
  state.counters["MiB"] = double(b.bytes) / double(kMiB);
  state.SetLabel("streaming sum, 2 threads");
}

//===--- (b) quantized GEMV / GEMM ----------------------------------------===//

struct WeightSet {
  int64_t N = 0, K = 0;
  PackedFormat format;
  std::vector<Buffer> copies;
  std::vector<PackedView> views;
};

/// Copies of one random N x K matrix in `format`, rebuilt when the shape
/// changes (only one shape is held at a time).
WeightSet &weights(int64_t N, int64_t K, const PackedFormat &f) {
  static WeightSet ws;
  if (ws.N == N && ws.K == K && ws.format.bits == f.bits &&
      ws.format.groupSize == f.groupSize && ws.format.symmetric == f.symmetric)
    return ws;
  ws = WeightSet();
  std::mt19937 rng(uint32_t(N * 31 + K));
  const int64_t groups = f.groupSize == 0 ? 1 : (K + f.groupSize - 1) / f.groupSize;
  std::vector<uint8_t> codes(size_t(N * K));
  for (size_t i = 0; i < codes.size(); i += 4) {
    const uint32_t r = rng();
    for (size_t j = 0; j < 4 && i + j < codes.size(); ++j)
      codes[i + j] = uint8_t((r >> (8 * j)) & ((1u << f.bits) - 1));
  }
  std::uniform_real_distribution<float> scale(1e-3f, 2e-2f);
  std::vector<float> scales(size_t(N * groups)), zeros(size_t(N * groups));
  for (auto &s : scales)
    s = qrt::f16ToF32(qrt::f32ToF16(scale(rng)));
  for (auto &z : zeros)
    z = float(rng() % (1u << f.bits));
  RefQuantMatrix ref{N, K, f.bits, f.groupSize, f.symmetric, codes.data(), scales.data(),
                     f.symmetric ? nullptr : zeros.data()};
  PackedMatrix packed;
  std::string error;
  if (!packed.pack(ref, f, &error)) {
    std::fprintf(stderr, "qrt_kernel_bench: %s\n", error.c_str());
    std::exit(1);
  }
  const size_t bytes = size_t(packed.geometry().totalBytes);
  const size_t copies = std::max<size_t>(4, (384 * kMiB + bytes - 1) / bytes);
  for (size_t c = 0; c < copies; ++c) {
    ws.copies.push_back(allocate(bytes));
    std::memcpy(ws.copies.back().get(), packed.data(), bytes);
    PackedView v = packed.view();
    v.data = ws.copies.back().get();
    ws.views.push_back(v);
  }
  ws.N = N;
  ws.K = K;
  ws.format = f;
  return ws;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Each benchmark iteration is one round: a bandwidth pass over the big
/// buffer (~40 ms, untimed), then GEMV/GEMM calls for ~50 ms on rotating
/// weight copies. The bandwidth here drifts (other load; and it is bimodal,
/// ~46 or ~75 GB/s, presumably with where the host places the two vCPUs),
/// so each round's ratio compares measurements a few milliseconds apart,
/// and the reported numbers are medians over the rounds.
/// The kernels qopt generates for an artifact with these shapes (lib/CodeGen:
/// EmitC -> C++ -> the system compiler, cached), loaded once.
const qrt::kernels::SpecializedLibrary *generatedKernels(std::string *error) {
  static std::unique_ptr<qrt::kernels::SpecializedLibrary> lib;
  static std::string failure;
  static bool tried = false;
  if (!tried) {
    tried = true;
    std::vector<qopt::codegen::GemmShape> plan;
    const int64_t shapes[3][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
    for (const auto &sh : shapes) {
      qopt::codegen::GemmShape g;
      g.rows = sh[0];
      g.cols = sh[1];
      plan.push_back(g);
    }
    qopt::codegen::KernelLibraryFiles files;
    std::vector<std::string> isas = qopt::codegen::kernelIsasForTarget("cpu");
    if (isas.empty())
      failure = "no kernels are generated for this CPU";
    else if (qopt::codegen::buildKernelLibraries(qopt::codegen::normalizePlan(plan), isas, {},
                                                 &files, &failure))
      lib = qrt::kernels::SpecializedLibrary::open(files.libraries.at(isas[0]), &failure);
  }
  *error = failure;
  return lib.get();
}

void BM_QGemm(benchmark::State &state, PackedFormat format, Activations act, Isa isa,
              bool generated) {
  const int64_t N = state.range(0), K = state.range(1), M = state.range(2);
  if (isa != Isa::Auto && !isaSupported(isa)) {
    state.SkipWithError("instruction set not supported on this CPU");
    return;
  }
  WeightSet &ws = weights(N, K, format);
  // Generic and generated kernels share the weight copies: attach or
  // detach the specialized kernels for this benchmark.
  for (PackedView &v : ws.views)
    v.special = nullptr;
  if (generated) {
    std::string why;
    const qrt::kernels::SpecializedLibrary *lib = generatedKernels(&why);
    for (PackedView &v : ws.views)
      if (!lib || !lib->attach(v)) {
        state.SkipWithError(("no generated kernel for this shape: " + why).c_str());
        return;
      }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(size_t(M * K)), y(size_t(M * N));
  for (auto &v : x)
    v = u(rng);
  GemmOptions opt;
  opt.isa = isa;
  opt.activations = act;
  opt.threads = kThreads;
  opt.pool = &pool();
  const double bytes = double(weightBytesRead(ws.views[0]));
  std::string error;
  size_t next = 0;
  std::vector<double> gemvRate, bwRate, ratio, perCall;
  for (auto _ : state) {
    state.PauseTiming();
    const double bw = double(bigBuffer().bytes) / bandwidthPass();
    gBandwidth = std::max(gBandwidth, bw);
    state.ResumeTiming();
    double seconds = 0.0;
    int64_t calls = 0;
    while (seconds < 0.05 || calls < 3) {
      const PackedView &w = ws.views[next++ % ws.views.size()];
      const auto t0 = Clock::now();
      const bool ok = qgemm(w, x.data(), M, K, y.data(), N, nullptr, opt, &error);
      seconds += secondsSince(t0);
      ++calls;
      if (!ok) {
        state.SkipWithError(error.c_str());
        return;
      }
      benchmark::DoNotOptimize(y.data());
    }
    const double rate = bytes * double(calls) / seconds;
    gemvRate.push_back(rate);
    bwRate.push_back(bw);
    ratio.push_back(rate / bw);
    perCall.push_back(seconds / double(calls));
  }
  const double call = median(perCall);
  state.counters["us/call"] = 1e6 * call;
  state.counters["GB/s"] = median(gemvRate) / 1e9;
  state.counters["bw_GB/s"] = median(bwRate) / 1e9;
  state.counters["bw%"] = 100.0 * median(ratio);
  state.counters["bw%max"] = 100.0 * median(gemvRate) / gBandwidth;
  state.counters["MB/call"] = bytes / 1e6;
  state.counters["GFLOP/s"] = 2.0 * double(M * N * K) / call / 1e9;
  state.SetLabel(layoutId(format) + " " + isaName(isa == Isa::Auto ? bestIsa() : isa) +
                 (act == Activations::Int8 ? " a8" : " f32") + (generated ? " generated" : ""));
}

//===--- (c) float-weight GEMM --------------------------------------------===//

/// The lm_head of a tied-embedding Llama-3.2-1B: bf16 [128256, 2048].
struct FloatWeightSet {
  int64_t N = 0, K = 0;
  Buffer data;
  FloatWeight view;
};

FloatWeightSet &floatWeights(int64_t N, int64_t K) {
  static FloatWeightSet ws;
  if (ws.N == N && ws.K == K)
    return ws;
  ws = FloatWeightSet();
  ws.data = allocate(size_t(N * K) * 2);
  auto *p = reinterpret_cast<uint16_t *>(ws.data.get());
  std::mt19937 rng(uint32_t(N + K));
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (int64_t i = 0; i < N * K; ++i)
    p[i] = qrt::f32ToBf16(d(rng));
  ws.N = N;
  ws.K = K;
  ws.view = {FloatFormat::BF16, N, K, ws.data.get()};
  return ws;
}

/// Rounds as in BM_QGemm (bandwidth pass, then >= 50 ms of calls).
void BM_FloatGemm(benchmark::State &state, bool baseline) {
  const int64_t N = state.range(0), K = state.range(1), M = state.range(2);
  FloatWeightSet &ws = floatWeights(N, K);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(size_t(M * K)), y(size_t(M * N));
  for (auto &v : x)
    v = u(rng);
  FloatGemmOptions opt;
  opt.threads = kThreads;
  opt.pool = &pool();
  const double bytes = double(weightBytesRead(ws.view));
  std::string error;
  std::vector<double> gemvRate, bwRate, ratio, perCall;
  for (auto _ : state) {
    state.PauseTiming();
    const double bw = double(bigBuffer().bytes) / bandwidthPass();
    gBandwidth = std::max(gBandwidth, bw);
    state.ResumeTiming();
    double seconds = 0.0;
    int64_t calls = 0;
    while (seconds < 0.05 || calls < 3) {
      const auto t0 = Clock::now();
      if (baseline) {
        qrt::bench::baselineFloatGemm(ws.view, x.data(), M, y.data(), pool(), kThreads);
      } else if (!floatGemm(ws.view, x.data(), M, K, y.data(), N, nullptr, opt, &error)) {
        state.SkipWithError(error.c_str());
        return;
      }
      seconds += secondsSince(t0);
      ++calls;
      benchmark::DoNotOptimize(y.data());
    }
    const double rate = bytes * double(calls) / seconds;
    gemvRate.push_back(rate);
    bwRate.push_back(bw);
    ratio.push_back(rate / bw);
    perCall.push_back(seconds / double(calls));
  }
  const double call = median(perCall);
  state.counters["us/call"] = 1e6 * call;
  state.counters["GB/s"] = median(gemvRate) / 1e9;
  state.counters["bw_GB/s"] = median(bwRate) / 1e9;
  state.counters["bw%"] = 100.0 * median(ratio);
  state.counters["bw%max"] = 100.0 * median(gemvRate) / gBandwidth;
  state.counters["MB/call"] = bytes / 1e6;
  state.counters["GFLOP/s"] = 2.0 * double(M * N * K) / call / 1e9;
  state.SetLabel(std::string("bf16 ") + (baseline ? "baseline loop" : isaName(bestIsa())));
}

std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

std::string loadAverage() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3)
    return "unknown";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

void registerAll() {
  auto bw = [](const char *name) {
    benchmark::RegisterBenchmark(name, BM_ReadBandwidth)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->MinTime(1.0);
  };
  bw("ReadBandwidth/first");
  const PackedFormat i4g128{4, 128, false};
  const int64_t shapes[3][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
  for (const auto &s : shapes)
    for (int64_t M : {1, 16})
      for (Activations act : {Activations::Int8, Activations::Float})
        // Generic kernel, then the one generated for this shape (same run,
        // same weights, back to back).
        for (bool generated : {false, true}) {
          const std::string name = std::string("QGemm/i4g128/") +
                                   (act == Activations::Int8 ? "a8" : "f32") +
                                   (generated ? "/generated" : "/auto");
          benchmark::RegisterBenchmark(name.c_str(), BM_QGemm, i4g128, act, Isa::Auto, generated)
              ->Args({s[0], s[1], M})
              ->ArgNames({"N", "K", "M"})
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond)
              ->Iterations(kRounds);
        }
  // The other instruction sets and formats at the largest-K shape.
  for (Isa isa : {Isa::Avx512, Isa::Avx2})
    benchmark::RegisterBenchmark((std::string("QGemm/i4g128/a8/") + isaName(isa)).c_str(),
                                 BM_QGemm, i4g128, Activations::Int8, isa, false)
        ->Args({4096, 14336, 1})
        ->ArgNames({"N", "K", "M"})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(kRounds);
  for (PackedFormat f : {PackedFormat{4, 32, false}, PackedFormat{8, 0, true}})
    for (int64_t M : {1, 16})
      benchmark::RegisterBenchmark(
          (std::string("QGemm/") + layoutId(f) + "/a8/auto").c_str(), BM_QGemm, f,
          Activations::Int8, Isa::Auto, false)
          ->Args({4096, 14336, M})
          ->ArgNames({"N", "K", "M"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(kRounds);
  for (int64_t M : {1, 16})
    for (bool baseline : {false, true})
      benchmark::RegisterBenchmark(baseline ? "FloatGemm/bf16/baseline" : "FloatGemm/bf16/auto",
                                   BM_FloatGemm, baseline)
          ->Args({128256, 2048, M})
          ->ArgNames({"N", "K", "M"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(kRounds);
  bw("ReadBandwidth/last");
}

} // namespace

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::AddCustomContext("cpu_model", cpuModel());
  benchmark::AddCustomContext("kernel_path", isaName(bestIsa()));
  benchmark::AddCustomContext("threads", std::to_string(kThreads));
  benchmark::AddCustomContext("load_avg_at_start", loadAverage());
  registerAll();
  benchmark::RunSpecifiedBenchmarks();
  std::printf("load average at end: %s\n", loadAverage().c_str());
  benchmark::Shutdown();
  return 0;
}
