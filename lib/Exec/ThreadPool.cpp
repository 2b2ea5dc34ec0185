//===- ThreadPool.cpp - parallel-for for the reference kernels -------===//
#include "ThreadPool.h"

#include <algorithm>

namespace qopt::exec {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i)
    workers_.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : workers_)
    t.join();
}

// Pieces are claimed one at a time under the lock: a job has at most a few
// pieces per thread, so the lock is never contended for long.
void ThreadPool::runPieces(int worker) {
  std::unique_lock<std::mutex> lock(mu_);
  while (fn_ && nextPiece_ < pieces_) {
    int64_t piece = nextPiece_++;
    const auto *fn = fn_;
    int64_t begin = piece * pieceSize_, end = std::min(n_, begin + pieceSize_);
    lock.unlock();
    (*fn)(begin, end, worker);
    lock.lock();
    if (++finishedPieces_ == pieces_)
      done_.notify_all();
  }
}

void ThreadPool::workerLoop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
    }
    runPieces(worker);
  }
}

void ThreadPool::parallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)> &fn) {
  if (n <= 0)
    return;
  grain = std::max<int64_t>(grain, 1);
  // A few pieces per thread balance uneven rows (causal attention).
  int64_t maxPieces = std::max<int64_t>(1, n / grain);
  int64_t pieces = std::min<int64_t>(maxPieces, int64_t(size()) * 4);
  if (workers_.empty() || pieces == 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    pieceSize_ = (n + pieces - 1) / pieces;
    pieces_ = (n + pieceSize_ - 1) / pieceSize_;
    nextPiece_ = 0;
    finishedPieces_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  runPieces(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return finishedPieces_ == pieces_; });
  fn_ = nullptr;
}

} // namespace qopt::exec
