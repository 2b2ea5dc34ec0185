//===- QGemm.cpp - dispatch, activation prep and threading for qgemm ------===//
//
// Work is split into (panel of <= 64 rows of x) x (run of consecutive
// 16-row tiles) tasks that the workers take from one atomic counter: each
// task streams a contiguous stretch of the packed weights, and a worker
// slowed down by other load on the machine simply takes fewer tasks.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/QGemm.h"

#include "KernelArgs.h"
#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

namespace qrt::kernels {

namespace {

using namespace detail;

/// Rows of x per panel: their int8 (or fp32) copies stay in L2 while every
/// tile of W streams past them.
constexpr int64_t kPanelRows = 64;
/// Below this many multiply-adds per worker, waking another one costs more
/// than it saves.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;

/// Per-calling-thread scratch reused across calls (no allocation per GEMV).
struct Workspace {
  std::vector<int8_t> q;
  std::vector<float> sx;
  std::vector<int32_t> bsum;
  std::vector<float> gsum;
  std::vector<float> xpad;
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

struct Job {
  WeightArgs w;
  ActF32 af;
  ActI8 ai;
  OutArgs o;
  F32Kernel f32 = nullptr; // exactly one of f32 / i8 is set
  I8Kernel i8 = nullptr;
  int64_t M = 0, tiles = 0, chunkTiles = 1, chunks = 1, panels = 1;
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
    const int64_t t0 = c * j.chunkTiles, t1 = std::min(j.tiles, t0 + j.chunkTiles);
    if (j.f32)
      j.f32(j.w, j.af, j.o, t0, t1, m0, m1);
    else
      j.i8(j.w, j.ai, j.o, t0, t1, m0, m1);
  }
}

struct QuantJob {
  QuantizeKernel fn;
  const float *x;
  int64_t ldx, K, Kp, M, rowsPerPart;
  int8_t *q;
  float *sx;
  int32_t *bsum;
  int64_t ldsx;
};

void runQuantize(void *ctx, int part) {
  const QuantJob &j = *static_cast<const QuantJob *>(ctx);
  const int64_t m0 = part * j.rowsPerPart, m1 = std::min(j.M, m0 + j.rowsPerPart);
  if (m0 < m1)
    j.fn(j.x, j.ldx, j.K, j.Kp, m0, m1, j.q, j.Kp, j.sx, j.bsum, j.ldsx);
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

bool qgemm(const PackedView &w, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy,
           const float *bias, const GemmOptions &opt, std::string *error) {
  const PackedGeometry &g = w.geometry;
  PackedGeometry expect;
  if (!computeGeometry(w.format, g.rows, g.cols, &expect, error))
    return false;
  if (!sameGeometry(expect, g) || !w.data) {
    *error = "qgemm: packed view of " + layoutId(w.format) +
             " is inconsistent (geometry or data pointer)";
    return false;
  }
  const int64_t N = g.rows, K = g.cols, Kp = g.paddedCols;
  if (M < 0 || M > (int64_t(1) << 31) || ldx < K || ldy < N || (M > 0 && (!x || !y))) {
    *error = "qgemm: bad activations/output (M " + std::to_string(M) + ", ldx " +
             std::to_string(ldx) + ", ldy " + std::to_string(ldy) + ") for a " +
             std::to_string(N) + "x" + std::to_string(K) + " weight";
    return false;
  }
  const Isa isa = opt.isa == Isa::Auto ? bestIsa() : opt.isa;
  if (!isaSupported(isa)) {
    *error = std::string("qgemm: this CPU cannot run the ") + isaName(isa) + " kernels";
    return false;
  }
  if (M == 0)
    return true;

  ThreadPool &pool = opt.pool ? *opt.pool : ThreadPool::global();
  int threads = opt.threads > 0 ? std::min(opt.threads, pool.size()) : pool.size();
  // In double: M * N * Kp can exceed int64 for absurd (but valid) shapes.
  const double work = double(M) * double(N) * double(Kp);
  threads = int(std::max(1.0, std::min(double(threads), work / double(kMinWorkPerThread))));

  const Kernels kern = kernelsFor(isa);
  Job job;
  job.w = {w.data,
           N,
           Kp,
           g.groupSize,
           g.groups,
           g.tileStride,
           g.superblockStride,
           g.metaBytes,
           g.groupCodeBytes,
           w.format.bits,
           w.format.symmetric ? 1 : 0};
  job.o = {y, ldy, bias};
  job.M = M;
  job.tiles = g.tiles;

  Workspace &ws = tWork;
  if (opt.activations == Activations::Float) {
    job.f32 = kern.f32;
    const float *xs = x;
    int64_t ldxs = ldx;
    if (K != Kp) {
      // The kernels read whole groups: give them zero-padded rows.
      ws.xpad.assign(size_t(M * Kp), 0.0f);
      for (int64_t m = 0; m < M; ++m)
        std::memcpy(ws.xpad.data() + m * Kp, x + m * ldx, size_t(K) * sizeof(float));
      xs = ws.xpad.data();
      ldxs = Kp;
    }
    // Sums of x per 32 columns, for the zero-point term.
    const int64_t blocks = Kp / kActBlock;
    ws.sx.resize(size_t(M * blocks));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t b = 0; b < blocks; ++b) {
        float s = 0.0f;
        for (int64_t k = b * kActBlock; k < (b + 1) * kActBlock; ++k)
          s += xs[m * ldxs + k];
        ws.sx[size_t(m * blocks + b)] = s;
      }
    job.af = {xs, ldxs, ws.sx.data(), blocks};
  } else {
    job.i8 = kern.i8;
    const int64_t blocks = Kp / kActBlock;
    ws.q.resize(size_t(M * Kp));
    ws.sx.resize(size_t(M * blocks));
    ws.bsum.resize(size_t(M * blocks));
    ws.gsum.resize(size_t(M * g.groups));
    QuantJob qj{kern.quantize, x,          ldx,           K,      Kp, M, M,
                ws.q.data(),   ws.sx.data(), ws.bsum.data(), blocks};
    int qparts = 1;
    if (threads > 1 && M > 1 && M * Kp >= (int64_t(1) << 16)) {
      qparts = int(std::min<int64_t>(threads, M));
      qj.rowsPerPart = (M + qparts - 1) / qparts;
    }
    pool.run(qparts, runQuantize, &qj);
    const int64_t bpg = g.groupSize / kActBlock;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        float s = 0.0f;
        for (int64_t b = gi * bpg; b < (gi + 1) * bpg; ++b)
          s += ws.sx[size_t(m * blocks + b)] * float(ws.bsum[size_t(m * blocks + b)]);
        ws.gsum[size_t(m * g.groups + gi)] = s;
      }
    job.ai = {ws.q.data(), Kp, ws.sx.data(), blocks, ws.gsum.data(), g.groups};
  }

  job.panels = (M + kPanelRows - 1) / kPanelRows;
  // Several tasks per worker so an unevenly loaded machine still balances.
  job.chunkTiles = std::max<int64_t>(1, g.tiles / (int64_t(threads) * 8));
  job.chunks = (g.tiles + job.chunkTiles - 1) / job.chunkTiles;
  pool.run(threads, runTasks, &job);
  return true;
}

} // namespace qrt::kernels
