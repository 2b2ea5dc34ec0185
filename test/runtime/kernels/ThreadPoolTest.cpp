//===- ThreadPoolTest.cpp - fork-join pool --------------------------------===//
#include "qopt-rt/kernels/ThreadPool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using qrt::kernels::ThreadPool;

namespace {

TEST(ThreadPool, EveryPartRunsOnceAndCallerIsWorkerZero) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  const auto caller = std::this_thread::get_id();
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + round % 6; // includes n > size (clamped)
    std::vector<std::atomic<int>> hits(8);
    std::atomic<bool> zeroOnCaller{false};
    pool.run(n, [&](int w) {
      hits[w].fetch_add(1);
      if (w == 0)
        zeroOnCaller = std::this_thread::get_id() == caller;
    });
    const int parts = std::min(n, 4);
    for (int w = 0; w < 8; ++w)
      ASSERT_EQ(hits[w].load(), w < parts ? 1 : 0) << "round " << round << " worker " << w;
    ASSERT_TRUE(zeroOnCaller.load());
  }
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(3);
  pool.setSpinMicros(0);
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::atomic<int> sum{0};
    pool.run(3, [&](int w) { sum += w + 1; });
    ASSERT_EQ(sum.load(), 6);
  }
}

TEST(ThreadPool, NestedRunIsInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run(2, [&](int) { pool.run(2, [&](int) { inner.fetch_add(1); }); });
  EXPECT_EQ(inner.load(), 4);
}

TEST(ThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        pool.run(2, [&](int) { total.fetch_add(1); });
    });
  for (auto &t : callers)
    t.join();
  EXPECT_EQ(total.load(), 600);
}

} // namespace
