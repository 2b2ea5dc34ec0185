//===- FloatGemm.cpp - dispatch, activation prep and threading for floatGemm ===//
//
// Work is split into (panel of <= 64 rows of x) x (run of consecutive
// weight rows) tasks taken from one atomic counter, as in qgemm: each task
// streams a contiguous stretch of W, and a worker slowed down by other load
// on the machine just takes fewer tasks. For bf16 weights on the SIMD paths
// x is first copied into the even/odd column order the kernels read
// (FloatGemmArgs.h): M x K floats, small next to W.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/FloatGemm.h"

#include "FloatGemmArgs.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <vector>

namespace qrt::kernels {

namespace {

using namespace detail;

/// Rows of x per panel: they stay in L2 (64 x 2048 fp32 = 512 KiB) while
/// every weight row streams past them.
constexpr int64_t kPanelRows = 64;
/// Below this many multiply-adds per worker, waking another one costs more
/// than it saves.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;
/// Task row runs are multiples of this (every ISA's tile height divides it).
constexpr int64_t kRowQuantum = 4;

/// Per-calling-thread copy of x in the kernels' bf16 column order.
thread_local std::vector<float> tXperm;

struct Job {
  FloatGemmArgs a;
  FloatKernel kernel = nullptr;
  int64_t M = 0, N = 0, chunkRows = 1, chunks = 1, panels = 1;
  std::atomic<int64_t> next{0};
};

void runTasks(void *ctx, int) {
  Job &j = *static_cast<Job *>(ctx);
  const int64_t total = j.panels * j.chunks;
  for (;;) {
    const int64_t task = j.next.fetch_add(1, std::memory_order_relaxed);
    if (task >= total)
      return;
    const int64_t p = task / j.chunks, c = task % j.chunks;
    const int64_t m0 = p * kPanelRows, m1 = std::min(j.M, m0 + kPanelRows);
    const int64_t n0 = c * j.chunkRows, n1 = std::min(j.N, n0 + j.chunkRows);
    j.kernel(j.a, n0, n1, m0, m1);
  }
}

/// out[m * Kp + ...] = row m of x, per block of 2L columns the even columns
/// then the odd ones, zero-padded to Kp = K rounded up to 2L.
void permuteForBf16(const float *x, int64_t M, int64_t ldx, int64_t K, int L, float *out,
                    int64_t Kp) {
  for (int64_t m = 0; m < M; ++m) {
    const float *xr = x + m * ldx;
    float *o = out + m * Kp;
    for (int64_t b = 0; b < Kp; b += 2 * L)
      for (int i = 0; i < L; ++i) {
        const int64_t ke = b + 2 * i, ko = ke + 1;
        o[b + i] = ke < K ? xr[ke] : 0.0f;
        o[b + L + i] = ko < K ? xr[ko] : 0.0f;
      }
  }
}

std::string shape(const FloatWeight &w) {
  return std::string(w.format == FloatFormat::BF16 ? "bf16 " : "f32 ") +
         std::to_string(w.rows) + "x" + std::to_string(w.cols);
}

} // namespace

int64_t weightBytesRead(const FloatWeight &w) {
  return w.rows * w.cols * (w.format == FloatFormat::BF16 ? 2 : 4);
}

bool floatGemm(const FloatWeight &w, const float *x, int64_t M, int64_t ldx, float *y,
               int64_t ldy, const float *bias, const FloatGemmOptions &opt,
               std::string *error) {
  const int64_t N = w.rows, K = w.cols;
  if (N < 0 || K < 0 || (w.format != FloatFormat::F32 && w.format != FloatFormat::BF16) ||
      (N > 0 && K > 0 && !w.data)) {
    *error = "floatGemm: weight view " + shape(w) + " is invalid (negative size or no data)";
    return false;
  }
  if (M < 0 || M > (int64_t(1) << 31) || ldx < K || ldy < N || (M > 0 && (!x || !y))) {
    *error = "floatGemm: bad activations/output (M " + std::to_string(M) + ", ldx " +
             std::to_string(ldx) + ", ldy " + std::to_string(ldy) + ") for a " + shape(w) +
             " weight";
    return false;
  }
  Isa isa = opt.isa == Isa::Auto ? bestIsa() : opt.isa;
  if (!isaSupported(isa)) {
    *error = std::string("floatGemm: this CPU cannot run the ") + isaName(isa) + " kernels";
    return false;
  }
  if (M == 0 || N == 0)
    return true;

  Job job;
  const bool bf16 = w.format == FloatFormat::BF16;
  int block = 0; // bf16 columns per register; 0: x as given
  switch (isa) {
#if QRT_KERNELS_X86
  case Isa::Avx2:
    job.kernel = avx2::floatGemm;
    block = avx2::kBf16Block;
    break;
  case Isa::Avx512:
  case Isa::Avx512Vnni:
    job.kernel = avx512::floatGemm;
    block = avx512::kBf16Block;
    break;
#endif
  default:
    job.kernel = scalar::floatGemm;
    break;
  }
  job.a = {w.data, K, bf16 ? 1 : 0, x, ldx, y, ldy, bias};
  if (bf16 && block > 0) {
    const int64_t Kp = (K + block - 1) / block * block;
    tXperm.resize(size_t(M * Kp));
    permuteForBf16(x, M, ldx, K, block / 2, tXperm.data(), Kp);
    job.a.x = tXperm.data();
    job.a.ldx = Kp;
  }

  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  int threads = opt.threads > 0 ? std::min(opt.threads, pool.size()) : pool.size();
  const double work = double(M) * double(N) * double(std::max<int64_t>(K, 1));
  threads = int(std::max(1.0, std::min(double(threads), work / double(kMinWorkPerThread))));
  job.M = M;
  job.N = N;
  job.panels = (M + kPanelRows - 1) / kPanelRows;
  // Several tasks per worker so an unevenly loaded machine still balances.
  const int64_t perTask = std::max<int64_t>(1, N / (int64_t(threads) * 8));
  job.chunkRows = (perTask + kRowQuantum - 1) / kRowQuantum * kRowQuantum;
  job.chunks = (N + job.chunkRows - 1) / job.chunkRows;
  if (threads == 1)
    runTasks(&job, 0);
  else
    pool.run(threads, runTasks, &job);
  return true;
}

} // namespace qrt::kernels
