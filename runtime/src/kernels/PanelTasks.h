//===- PanelTasks.h - the task split qgemm and floatGemm share --*- C++ -*-===//
//
// Both GEMMs split their work into (panel of <= kPanelRows rows of x) x
// (run of consecutive weight units: 16-row tiles for qgemm, rows for
// floatGemm) tasks that the workers take from one atomic counter: each task
// streams a contiguous stretch of W, and a worker slowed down by other load
// on the machine simply takes fewer tasks.
//
// Unlike KernelArgs.h this header has bodies, so include it only from files
// compiled for the baseline instruction set (QGemm.cpp, FloatGemm.cpp),
// never from a per-ISA file.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_SRC_KERNELS_PANELTASKS_H
#define QOPT_RT_SRC_KERNELS_PANELTASKS_H

#include "qopt-rt/kernels/ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace qrt::kernels::detail {

/// Rows of x per panel: their (prepared) copies stay in L2 while every
/// weight unit streams past them (64 x 2048 fp32 = 512 KiB).
constexpr int64_t kPanelRows = 64;
/// Below this many multiply-adds per worker, waking another one costs more
/// than it saves.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;

/// Workers for a job of `work` multiply-adds: `requested` (0: the whole
/// pool) capped by the pool's size and by the work, at least one.
inline int workersFor(int requested, const ThreadPool &pool, double work) {
  const int threads = requested > 0 ? std::min(requested, pool.size()) : pool.size();
  return int(std::max(1.0, std::min(double(threads), work / double(kMinWorkPerThread))));
}

/// Runs task(m0, m1, u0, u1) for every panel [m0, m1) of the M rows and run
/// [u0, u1) of the `units` weight units, on `threads` workers of `pool`.
/// Runs are a multiple of `quantum` units, sized for several tasks per
/// worker so an unevenly loaded machine still balances.
template <class Task>
void runPanelTasks(ThreadPool &pool, int threads, int64_t M, int64_t units, int64_t quantum,
                   const Task &task) {
  const int64_t panels = (M + kPanelRows - 1) / kPanelRows;
  const int64_t perTask = std::max<int64_t>(1, units / (int64_t(threads) * 8));
  const int64_t chunk = (perTask + quantum - 1) / quantum * quantum;
  const int64_t chunks = (units + chunk - 1) / chunk;
  const int64_t total = panels * chunks;
  std::atomic<int64_t> next{0};
  pool.run(threads, [&](int) {
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= total)
        return;
      const int64_t p = t / chunks, c = t % chunks;
      const int64_t m0 = p * kPanelRows, m1 = std::min(M, m0 + kPanelRows);
      const int64_t u0 = c * chunk, u1 = std::min(units, u0 + chunk);
      task(m0, m1, u0, u1);
    }
  });
}

} // namespace qrt::kernels::detail

#endif
