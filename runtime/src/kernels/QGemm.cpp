//===- QGemm.cpp - dispatch, activation prep and threading for qgemm ------===//
//
// Work is split into (panel of rows of x) x (run of consecutive 16-row
// tiles) tasks (PanelTasks.h): each task streams a contiguous stretch of the
// packed weights.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/QGemm.h"

#include "KernelArgs.h"
#include "PanelTasks.h"
#include "qopt-rt/kernels/Specialized.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qrt::kernels {

namespace {

using namespace detail;

/// Per-calling-thread scratch reused across calls (no allocation per GEMV).
struct Workspace {
  PreparedActivations prepared; ///< qgemm's own preparation of x
  std::vector<float> gsum;      ///< per-group sums of int8 activations
};
thread_local Workspace tWork;

struct Kernels {
  F32Kernel f32;
  I8Kernel i8;
  QuantizeKernel quantize;
};

Kernels kernelsFor(Isa isa) {
  switch (isa) {
#if QRT_KERNELS_X86
  case Isa::Avx2:
    return {avx2::gemmF32, avx2::gemmI8, avx2::quantizeI8};
  case Isa::Avx512:
    return {avx512::gemmF32, avx512::gemmI8, avx512::quantizeI8};
  case Isa::Avx512Vnni:
    return {avx512::gemmF32, avx512vnni::gemmI8, avx512::quantizeI8};
#endif
  default:
    return {scalar::gemmF32, scalar::gemmI8, scalar::quantizeI8};
  }
}

bool sameGeometry(const PackedGeometry &a, const PackedGeometry &b) {
  return a.rows == b.rows && a.cols == b.cols && a.paddedCols == b.paddedCols &&
         a.groupSize == b.groupSize && a.groups == b.groups && a.tiles == b.tiles &&
         a.groupCodeBytes == b.groupCodeBytes && a.metaBytes == b.metaBytes &&
         a.superblockStride == b.superblockStride && a.tileStride == b.tileStride &&
         a.totalBytes == b.totalBytes;
}

} // namespace

int64_t weightBytesRead(const PackedView &w) { return w.geometry.totalBytes; }

const char *actQuantName(ActQuantMode mode) {
  switch (mode) {
  case ActQuantMode::PerToken:
    return "per_token";
  case ActQuantMode::Static:
    return "static";
  default:
    return "block32";
  }
}

namespace {

/// Resolves options.isa and checks the CPU can run it.
bool resolveIsa(const GemmOptions &opt, Isa *isa, std::string *error) {
  *isa = opt.isa == Isa::Auto ? bestIsa() : opt.isa;
  if (!isaSupported(*isa)) {
    *error = std::string("qgemm: this CPU cannot run the ") + isaName(*isa) + " kernels";
    return false;
  }
  return true;
}

struct QuantJob {
  PreparedActivations *p;
  const float *x;
  int64_t ldx, M, rowsPerPart;
};

void runQuantize(void *ctx, int part) {
  const QuantJob &j = *static_cast<const QuantJob *>(ctx);
  const int64_t m0 = part * j.rowsPerPart, m1 = std::min(j.M, m0 + j.rowsPerPart);
  if (m0 < m1)
    prepareRows(j.p, j.x + m0 * j.ldx, j.ldx, m0, m1);
}

/// prepareActivations with the GEMM's worker count (the quantization is
/// only split when the rows are many and long enough to pay for it).
void prepareAll(const float *x, int64_t M, int64_t ldx, int threads, ThreadPool &pool,
                PreparedActivations *p) {
  if (p->activations == Activations::Int8 && threads > 1 && M > 1 &&
      M * p->paddedCols >= (int64_t(1) << 16)) {
    const int qparts = int(std::min<int64_t>(threads, M));
    QuantJob qj{p, x, ldx, M, (M + qparts - 1) / qparts};
    pool.run(qparts, runQuantize, &qj);
  } else {
    prepareRows(p, x, ldx, 0, M);
  }
}

} // namespace

bool resizePrepared(PreparedActivations *p, int64_t M, int64_t K, int64_t minPaddedCols,
                    const GemmOptions &opt, std::string *error) {
  if (M < 0 || M > (int64_t(1) << 31) || K <= 0 || K > (int64_t(1) << 40)) {
    *error = "qgemm: cannot prepare " + std::to_string(M) + " rows of " + std::to_string(K) +
             " activations";
    return false;
  }
  if (opt.activations == Activations::Int8 && opt.actQuant == ActQuantMode::Static &&
      !(opt.staticScale > 0.0f && std::isfinite(opt.staticScale))) {
    *error = "qgemm: a static activation scale must be positive and finite, got " +
             std::to_string(opt.staticScale);
    return false;
  }
  if (!resolveIsa(opt, &p->isa, error))
    return false;
  const int64_t Kp = (std::max(K, minPaddedCols) + kActBlock - 1) / kActBlock * kActBlock;
  p->activations = opt.activations;
  p->actQuant = opt.activations == Activations::Int8 ? opt.actQuant : ActQuantMode::Block32;
  p->staticScale = p->actQuant == ActQuantMode::Static ? opt.staticScale : 0.0f;
  p->rows = M;
  p->cols = K;
  p->paddedCols = Kp;
  const size_t blocks = size_t(M * (Kp / kActBlock));
  if (opt.activations == Activations::Float) {
    p->x.resize(size_t(M * Kp));
    p->q.clear();
    p->bsum.clear();
  } else {
    p->q.resize(size_t(M * Kp));
    p->bsum.resize(blocks);
    p->x.clear();
  }
  p->sx.resize(blocks);
  return true;
}

namespace {

/// Round half to even of c for |c| <= 2^22: adding and subtracting
/// 1.5 * 2^23 leaves no fraction bits, and the FPU's default rounding is
/// to nearest even, which is what std::nearbyint does (and what the
/// reference executor calls). Unlike a libm call, this vectorizes.
inline float roundHalfEven(float c) {
  const float magic = 12582912.0f; // 1.5 * 2^23
  return (c + magic) - magic;
}

/// The PerToken / Static quantizer, scalar (activations are tiny next to
/// the weights a GEMM streams): q = clamp(round_half_even(x / scale),
/// -127, 127), every block of a row sharing the row's scale. Written as
/// lib/Exec/FakeQuant.cpp computes it (x / scale, not x * (1 / scale)) so
/// that the codes are the reference's bit for bit.
void quantizeWholeRows(PreparedActivations *p, const float *x, int64_t ldx, int64_t m0,
                       int64_t m1) {
  const int64_t K = p->cols, Kp = p->paddedCols, blocks = Kp / kActBlock;
  for (int64_t m = m0; m < m1; ++m) {
    const float *xr = x + (m - m0) * ldx;
    int8_t *q = p->q.data() + m * Kp;
    float scale;
    bool poisoned = false; // the row's outputs must come out NaN
    if (p->actQuant == ActQuantMode::PerToken) {
      float amax = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float a = std::fabs(xr[k]);
        poisoned = poisoned || !(a <= std::numeric_limits<float>::max());
        amax = std::max(amax, a);
      }
      scale = amax / 127.0f;
    } else {
      scale = p->staticScale;
      for (int64_t k = 0; k < K; ++k)
        poisoned = poisoned || std::isnan(xr[k]);
    }
    if (poisoned || !(scale > 0.0f)) {
      // All-zero (scale 0) or poisoned: zero codes; the scale carries the NaN.
      std::fill(q, q + Kp, int8_t(0));
      if (poisoned)
        scale = std::numeric_limits<float>::quiet_NaN();
    } else {
      for (int64_t k = 0; k < K; ++k) {
        // Clamping first is the same as rounding first (127 is an integer)
        // and keeps infinities out of roundHalfEven.
        const float c = std::min(127.0f, std::max(-127.0f, xr[k] / scale));
        q[k] = int8_t(roundHalfEven(c));
      }
      std::fill(q + K, q + Kp, int8_t(0));
    }
    float *sx = p->sx.data() + m * blocks;
    int32_t *bsum = p->bsum.data() + m * blocks;
    for (int64_t b = 0; b < blocks; ++b) {
      int32_t sum = 0;
      for (int64_t k = b * kActBlock; k < (b + 1) * kActBlock; ++k)
        sum += q[k];
      sx[b] = scale;
      bsum[b] = sum;
    }
  }
}

} // namespace

void prepareRows(PreparedActivations *p, const float *x, int64_t ldx, int64_t m0, int64_t m1) {
  const int64_t K = p->cols, Kp = p->paddedCols, blocks = Kp / kActBlock;
  if (m0 >= m1)
    return;
  if (p->activations == Activations::Int8 && p->actQuant != ActQuantMode::Block32) {
    quantizeWholeRows(p, x, ldx, m0, m1);
    return;
  }
  if (p->activations == Activations::Int8) {
    const QuantizeKernel quantize = kernelsFor(p->isa).quantize;
    quantize(x, ldx, K, Kp, 0, m1 - m0, p->q.data() + m0 * Kp, Kp, p->sx.data() + m0 * blocks,
             p->bsum.data() + m0 * blocks, blocks);
    return;
  }
  for (int64_t m = m0; m < m1; ++m) {
    // Zero-padded copy (the kernels read whole groups), then the sums of x
    // per 32 columns for the zero-point term.
    float *row = p->x.data() + m * Kp;
    std::memcpy(row, x + (m - m0) * ldx, size_t(K) * sizeof(float));
    std::fill(row + K, row + Kp, 0.0f);
    float *sums = p->sx.data() + m * blocks;
    for (int64_t b = 0; b < blocks; ++b) {
      float s = 0.0f;
      for (int64_t k = b * kActBlock; k < (b + 1) * kActBlock; ++k)
        s += row[k];
      sums[b] = s;
    }
  }
}

bool prepareActivations(const float *x, int64_t M, int64_t ldx, int64_t K, int64_t minPaddedCols,
                        const GemmOptions &opt, PreparedActivations *p, std::string *error) {
  if (ldx < K || (M > 0 && !x)) {
    *error = "qgemm: bad activations (M " + std::to_string(M) + ", ldx " + std::to_string(ldx) +
             ") for K " + std::to_string(K);
    return false;
  }
  if (!resizePrepared(p, M, K, minPaddedCols, opt, error))
    return false;
  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  const int threads = workersFor(opt.threads, pool, double(M) * double(p->paddedCols) * 64.0);
  prepareAll(x, M, ldx, threads, pool, p);
  return true;
}

/// The geometry checks shared by qgemm and qgemmPrepared.
static bool checkView(const PackedView &w, std::string *error) {
  PackedGeometry expect;
  if (!computeGeometry(w.format, w.geometry.rows, w.geometry.cols, &expect, error))
    return false;
  if (!sameGeometry(expect, w.geometry) || !w.data) {
    *error = "qgemm: packed view of " + layoutId(w.format) +
             " is inconsistent (geometry or data pointer)";
    return false;
  }
  return true;
}

/// The GEMM proper, everything validated.
static void runGemm(const PackedView &w, const PreparedActivations &p, float *y, int64_t ldy,
                    const float *bias, int threads, ThreadPool &pool, Isa isa) {
  const PackedGeometry &g = w.geometry;
  const int64_t M = p.rows, N = g.rows, blocks = p.paddedCols / kActBlock;
  Kernels kern = kernelsFor(isa);
  // Kernels generated for this very shape (Specialized.h) replace the
  // generic ones when they were compiled for the path chosen.
  if (w.special && w.special->isa == isa) {
    kern.f32 = w.special->f32;
    kern.i8 = w.special->i8;
  }
  const WeightArgs wa{w.data,
                      N,
                      g.paddedCols,
                      g.groupSize,
                      g.groups,
                      g.tileStride,
                      g.superblockStride,
                      g.metaBytes,
                      g.groupCodeBytes,
                      w.format.bits,
                      w.format.symmetric ? 1 : 0};
  const OutArgs out{y, ldy, bias};
  if (p.activations == Activations::Float) {
    const ActF32 af{p.x.data(), p.paddedCols, p.sx.data(), blocks};
    runPanelTasks(pool, threads, M, g.tiles, 1,
                  [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
                    kern.f32(wa, af, out, t0, t1, m0, m1);
                  });
  } else {
    // Per-group sums of sx * (sum of codes) for this weight's group size.
    std::vector<float> &gsum = tWork.gsum;
    gsum.resize(size_t(M * g.groups));
    const int64_t bpg = g.groupSize / kActBlock;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        float s = 0.0f;
        for (int64_t b = gi * bpg; b < (gi + 1) * bpg; ++b)
          s += p.sx[size_t(m * blocks + b)] * float(p.bsum[size_t(m * blocks + b)]);
        gsum[size_t(m * g.groups + gi)] = s;
      }
    const ActI8 ai{p.q.data(), p.paddedCols, p.sx.data(), blocks, gsum.data(), g.groups};
    runPanelTasks(pool, threads, M, g.tiles, 1,
                  [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
                    kern.i8(wa, ai, out, t0, t1, m0, m1);
                  });
  }
}

bool qgemm(const PackedView &w, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy,
           const float *bias, const GemmOptions &opt, std::string *error) {
  if (!checkView(w, error))
    return false;
  const PackedGeometry &g = w.geometry;
  const int64_t N = g.rows, K = g.cols, Kp = g.paddedCols;
  if (M < 0 || M > (int64_t(1) << 31) || ldx < K || ldy < N || (M > 0 && (!x || !y))) {
    *error = "qgemm: bad activations/output (M " + std::to_string(M) + ", ldx " +
             std::to_string(ldx) + ", ldy " + std::to_string(ldy) + ") for a " +
             std::to_string(N) + "x" + std::to_string(K) + " weight";
    return false;
  }
  Isa isa;
  if (!resolveIsa(opt, &isa, error))
    return false;
  if (M == 0)
    return true;
  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  // In double: M * N * Kp can exceed int64 for absurd (but valid) shapes.
  const int threads = workersFor(opt.threads, pool, double(M) * double(N) * double(Kp));
  PreparedActivations &p = tWork.prepared;
  GemmOptions resolved = opt;
  resolved.isa = isa;
  if (!resizePrepared(&p, M, K, Kp, resolved, error))
    return false;
  prepareAll(x, M, ldx, threads, pool, &p);
  runGemm(w, p, y, ldy, bias, threads, pool, isa);
  return true;
}

bool qgemmPrepared(const PackedView &w, const PreparedActivations &p, float *y, int64_t ldy,
                   const float *bias, const GemmOptions &opt, std::string *error) {
  if (!checkView(w, error))
    return false;
  const PackedGeometry &g = w.geometry;
  const int64_t N = g.rows, K = g.cols, Kp = g.paddedCols;
  const bool int8 = opt.activations == Activations::Int8;
  if (p.cols != K || p.paddedCols < Kp || p.paddedCols % kActBlock != 0 ||
      p.activations != opt.activations || (int8 && p.actQuant != opt.actQuant) ||
      (int8 && opt.actQuant == ActQuantMode::Static && p.staticScale != opt.staticScale)) {
    *error = "qgemm: prepared activations (" + std::to_string(p.cols) + " columns padded to " +
             std::to_string(p.paddedCols) + ", " +
             (p.activations == Activations::Float ? std::string("float")
                                                  : std::string("int8 ") +
                                                        actQuantName(p.actQuant)) +
             ") do not fit a " + std::to_string(N) + "x" + std::to_string(K) +
             " weight padded to " + std::to_string(Kp) + " (" +
             (!int8 ? std::string("float") : std::string("int8 ") + actQuantName(opt.actQuant)) +
             ")";
    return false;
  }
  const size_t need = size_t(p.rows * p.paddedCols);
  const bool sized = p.activations == Activations::Float
                         ? p.x.size() >= need
                         : p.q.size() >= need && p.bsum.size() >= need / kActBlock;
  if (!sized || p.sx.size() < need / kActBlock || ldy < N || (p.rows > 0 && !y)) {
    *error = "qgemm: prepared activations are not sized for their rows, or bad output (ldy " +
             std::to_string(ldy) + ")";
    return false;
  }
  Isa isa;
  if (!resolveIsa(opt, &isa, error))
    return false;
  if (p.rows == 0)
    return true;
  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  const int threads = workersFor(opt.threads, pool, double(p.rows) * double(N) * double(Kp));
  runGemm(w, p, y, ldy, bias, threads, pool, isa);
  return true;
}

} // namespace qrt::kernels
