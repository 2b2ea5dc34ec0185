//===- ThreadPool.cpp - spin-then-sleep fork-join pool ---------------------===//
//
// One job at a time: the caller publishes (fn, ctx), bumps a generation
// counter packed with the job's part count n in one atomic word (so a worker
// never pairs one job's generation with another's n) and runs part 0;
// workers notice the new generation (spinning, or woken from the condition
// variable), run their part and count down. The sleeper count lets the
// caller skip the notify syscall while everybody is still spinning; all of
// it is sequentially consistent, so a worker that announces itself as a
// sleeper always re-checks the generation after.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/ThreadPool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QRT_CPU_RELAX() _mm_pause()
#else
#define QRT_CPU_RELAX() std::this_thread::yield()
#endif

namespace qrt::kernels {

namespace {
thread_local bool tInsideJob = false;
} // namespace

struct ThreadPool::Impl {
  int size = 1;
  std::vector<std::thread> threads;
  std::mutex runMutex; // one job at a time
  std::mutex sleepMutex;
  std::condition_variable wake;
  std::atomic<uint64_t> state{0}; // generation << 16 | parts of that job
  std::atomic<int> sleepers{0};
  std::atomic<int> pending{0};
  std::atomic<bool> stop{false};
  std::atomic<int> spinMicros{200};
  // The current job; written before `state` changes and read only by the
  // job's participants, which the caller waits for before the next job.
  void (*fn)(void *, int) = nullptr;
  void *ctx = nullptr;

  void worker(int index) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t now = state.load();
      if (now == seen && !stop.load()) {
        auto until = std::chrono::steady_clock::now() +
                     std::chrono::microseconds(spinMicros.load(std::memory_order_relaxed));
        for (int i = 0;; ++i) {
          now = state.load();
          if (now != seen || stop.load())
            break;
          if ((i & 255) == 255 && std::chrono::steady_clock::now() > until)
            break;
          QRT_CPU_RELAX();
        }
      }
      if (now == seen && !stop.load()) {
        std::unique_lock<std::mutex> lock(sleepMutex);
        sleepers.fetch_add(1);
        wake.wait(lock, [&] { return state.load() != seen || stop.load(); });
        sleepers.fetch_sub(1);
        now = state.load();
      }
      if (stop.load())
        return;
      seen = now;
      if (index < int(now & 0xffff)) {
        tInsideJob = true;
        fn(ctx, index);
        tInsideJob = false;
        pending.fetch_sub(1);
      }
    }
  }
};

ThreadPool::ThreadPool(int threads) : impl_(new Impl) {
  if (threads <= 0)
    threads = int(std::thread::hardware_concurrency());
  if (threads <= 0)
    threads = 1;
  if (threads > 1024)
    threads = 1024;
  impl_->size = threads;
  for (int i = 1; i < threads; ++i)
    impl_->threads.emplace_back([this, i] { impl_->worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->sleepMutex);
    impl_->stop.store(true);
  }
  impl_->wake.notify_all();
  for (auto &t : impl_->threads)
    t.join();
}

int ThreadPool::size() const { return impl_->size; }

void ThreadPool::setSpinMicros(int us) { impl_->spinMicros.store(us < 0 ? 0 : us); }

void ThreadPool::run(int n, void (*fn)(void *, int), void *ctx) {
  if (n > impl_->size)
    n = impl_->size;
  if (n <= 1 || tInsideJob) {
    for (int w = 0; w < (n < 1 ? 1 : n); ++w)
      fn(ctx, w);
    return;
  }
  Impl &p = *impl_;
  std::lock_guard<std::mutex> runLock(p.runMutex);
  p.fn = fn;
  p.ctx = ctx;
  p.pending.store(n - 1);
  uint64_t gen = (p.state.load() >> 16) + 1;
  p.state.store(gen << 16 | uint64_t(n));
  if (p.sleepers.load() > 0) {
    // Taking the mutex orders this notify after any sleeper's predicate check.
    { std::lock_guard<std::mutex> lock(p.sleepMutex); }
    p.wake.notify_all();
  }
  tInsideJob = true;
  fn(ctx, 0);
  tInsideJob = false;
  for (int i = 0; p.pending.load() != 0; ++i) {
    if (i > (1 << 16))
      std::this_thread::yield(); // a worker was descheduled: don't burn its core
    else
      QRT_CPU_RELAX();
  }
}

ThreadPool &ThreadPool::global() {
  static ThreadPool pool([] {
    if (const char *env = std::getenv("QRT_THREADS")) {
      int v = std::atoi(env);
      if (v > 0 && v <= 1024)
        return v;
    }
    return 0;
  }());
  return pool;
}

} // namespace qrt::kernels
