//===- ThreadPool.h - parallel-for for the reference kernels ---*- C++ -*-===//
//
// A small fixed pool whose idle workers sleep on a condition variable. Not
// OpenMP on purpose: spinning OpenMP workers would compete with OpenBLAS's
// own threads for the same cores between GEMMs.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_LIB_EXEC_THREADPOOL_H
#define QOPT_LIB_EXEC_THREADPOOL_H

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qopt::exec {

class ThreadPool {
public:
  /// `threads` counts the calling thread too; 1 runs everything inline.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return int(workers_.size()) + 1; }

  /// Calls fn(begin, end, worker) on contiguous pieces covering [0, n),
  /// `worker` in [0, size()) identifying the thread (for scratch buffers);
  /// returns when all are done. Pieces hold at least `grain` items. Not
  /// reentrant: fn must not call parallelFor.
  void parallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t, int)> &fn);

private:
  void workerLoop(int worker);
  void runPieces(int worker);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  // The current job, guarded by mu_ except the piece counter.
  const std::function<void(int64_t, int64_t, int)> *fn_ = nullptr;
  int64_t n_ = 0, pieceSize_ = 0, pieces_ = 0;
  int64_t nextPiece_ = 0, finishedPieces_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

} // namespace qopt::exec

#endif
