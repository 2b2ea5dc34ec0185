//===- FloatGemm.cpp - dispatch, activation prep and threading for floatGemm ===//
//
// Work is split into (panel of rows of x) x (run of consecutive weight
// rows) tasks as in qgemm (PanelTasks.h). For bf16 weights on the SIMD
// paths x is first copied into the even/odd column order the kernels read
// (FloatGemmArgs.h): M x K floats, small next to W.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/FloatGemm.h"

#include "FloatGemmArgs.h"
#include "PanelTasks.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <vector>

namespace qrt::kernels {

namespace {

using namespace detail;

/// Task row runs are multiples of this (every ISA's tile height divides it).
constexpr int64_t kRowQuantum = 4;

/// Per-calling-thread copy of x in the kernels' bf16 column order.
thread_local std::vector<float> tXperm;

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

  const bool bf16 = w.format == FloatFormat::BF16;
  FloatKernel kernel;
  int block = 0; // bf16 columns per register; 0: x as given
  switch (isa) {
#if QRT_KERNELS_X86
  case Isa::Avx2:
    kernel = avx2::floatGemm;
    block = avx2::kBf16Block;
    break;
  case Isa::Avx512:
  case Isa::Avx512Vnni:
    kernel = avx512::floatGemm;
    block = avx512::kBf16Block;
    break;
#endif
  default:
    kernel = scalar::floatGemm;
    break;
  }
  FloatGemmArgs a{w.data, K, bf16 ? 1 : 0, x, ldx, y, ldy, bias};
  if (bf16 && block > 0) {
    const int64_t Kp = (K + block - 1) / block * block;
    tXperm.resize(size_t(M * Kp));
    permuteForBf16(x, M, ldx, K, block / 2, tXperm.data(), Kp);
    a.x = tXperm.data();
    a.ldx = Kp;
  }

  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  const int threads =
      workersFor(opt.threads, pool, double(M) * double(N) * double(std::max<int64_t>(K, 1)));
  runPanelTasks(pool, threads, M, N, kRowQuantum,
                [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { kernel(a, n0, n1, m0, m1); });
  return true;
}

} // namespace qrt::kernels
