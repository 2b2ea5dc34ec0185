//===- ThreadPool.h - fork-join pool for the CPU kernels --------*- C++ -*-===//
//
// A fixed set of worker threads for data-parallel kernel calls. A decode
// step issues hundreds of GEMVs of ~0.1 ms each, so waking workers must cost
// microseconds, not a thread creation: workers spin for a short while after
// each job (catching the next one at once) and only then sleep on a
// condition variable.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_THREADPOOL_H
#define QOPT_RT_KERNELS_THREADPOOL_H

#include <memory>
#include <type_traits>

namespace qrt::kernels {

class ThreadPool {
public:
  /// A pool of `threads` workers counting the calling thread, which always
  /// takes part as worker 0 (so `threads - 1` threads are started);
  /// 0 = std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  /// Number of workers, the caller included.
  int size() const;

  /// Runs fn(ctx, w) for w in [0, n) concurrently, n clamped to [1, size()],
  /// and returns when all have returned. The caller runs w = 0. Calls from
  /// several threads are serialized; a call from inside a job of any pool
  /// runs all n parts inline on that thread, one after the other (no
  /// deadlock, no oversubscription, no parallelism).
  void run(int n, void (*fn)(void *ctx, int worker), void *ctx);

  /// run() with a callable taking the worker index.
  template <class F> void run(int n, F &&f) {
    auto thunk = [](void *ctx, int w) { (*static_cast<std::remove_reference_t<F> *>(ctx))(w); };
    run(n, thunk, const_cast<void *>(static_cast<const void *>(&f)));
  }

  /// How long (microseconds) idle workers spin before sleeping. Default 200.
  void setSpinMicros(int us);

  /// The process-wide pool the kernels use unless given another, sized to
  /// the hardware threads (or QRT_THREADS from the environment), created on
  /// first use.
  static ThreadPool &global();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace qrt::kernels

#endif
