//===- QuantizeRTN.cpp - round-to-nearest weight quantization ---------===//
//
// The streaming baseline: one weight at a time is read from the store
// (upcast to fp32), quantized, stored packed, and its float copy and its
// memory-mapped pages are dropped, so a model of any size quantizes in
// about one weight's worth of memory plus the packed result. No executor,
// no calibration.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/LinearSelection.h"
#include "qopt/Quant/Passes.h"
#include "qopt/Quant/Quantizer.h"
#include "qopt/Quant/StoreAccess.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <unistd.h>

namespace qopt::quant {
#define GEN_PASS_DEF_QUANTIZERTN
#include "qopt/Quant/Passes.h.inc"
} // namespace qopt::quant

using namespace mlir;
using namespace qopt;
using namespace qopt::quant;

namespace {

/// Runs fn(r0, r1) over `threads` slices of [0, rows).
template <typename Fn> void parallelRows(int64_t rows, int threads, Fn fn) {
  std::vector<std::thread> pool;
  const int64_t per = (rows + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    if (r0 < r1)
      pool.emplace_back(fn, r0, r1);
  }
  for (std::thread &t : pool)
    t.join();
}

/// NF4 in three steps: block absmax per row slice, the double
/// quantization over the whole matrix (its chunks cross rows), codes per
/// row slice. The same result as quantizeRTN.
QuantizedMatrix quantizeNF4Parallel(const float *w, int64_t rows, int64_t cols, const Format &f,
                                    int threads) {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.format = f;
  const int64_t groups = f.numGroups(cols);
  q.codes.resize(size_t(rows * cols));
  q.scales.resize(size_t(rows * groups));
  parallelRows(rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t b = f.groupBegin(g, cols), e = f.groupEnd(g, cols);
        float z;
        groupParams(w + r * cols + b, e - b, f, 1.0f, &q.scales[r * groups + g], &z);
      }
  });
  doubleQuantizeAbsmax(&q);
  parallelRows(rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        float s = q.scales[r * groups + g];
        for (int64_t k = f.groupBegin(g, cols); k < f.groupEnd(g, cols); ++k)
          q.codes[r * cols + k] = quantizeValue(w[r * cols + k], s, 0.0f, f);
      }
  });
  return q;
}

/// quantizeRTN over row slices on `threads` threads: rows are independent
/// for int and fp8.
QuantizedMatrix quantizeParallel(const float *w, int64_t rows, int64_t cols, const Format &f,
                                 int threads) {
  if (threads <= 1 || rows < 2 * threads)
    return quantizeRTN(w, rows, cols, f);
  if (f.kind == qllm::ElementKind::NF4)
    return quantizeNF4Parallel(w, rows, cols, f, threads);
  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = f;
  const int64_t groups = f.numGroups(cols);
  out.codes.resize(size_t(rows * cols));
  out.scales.resize(size_t(rows * groups));
  const bool zeros = f.kind == qllm::ElementKind::Int && !f.symmetric;
  if (zeros)
    out.zeros.resize(size_t(rows * groups));
  parallelRows(rows, threads, [&](int64_t r0, int64_t r1) {
    QuantizedMatrix part = quantizeRTN(w + r0 * cols, r1 - r0, cols, f);
    std::copy(part.codes.begin(), part.codes.end(), out.codes.begin() + r0 * cols);
    std::copy(part.scales.begin(), part.scales.end(), out.scales.begin() + r0 * groups);
    if (zeros)
      std::copy(part.zeros.begin(), part.zeros.end(), out.zeros.begin() + r0 * groups);
  });
  return out;
}

struct QuantizeRTN : qopt::quant::impl::QuantizeRTNBase<QuantizeRTN> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string error;
    Format format;
    WeightSelection selection;
    if (!parseFormat(wquant, groupSize, symmetric, &format, &error) ||
        !WeightSelection::create(format, overrides, quantizeEmbeddings, quantizeLmHead,
                                 &selection, &error)) {
      module.emitError() << "qopt-quantize-rtn: " << error;
      return signalPassFailure();
    }
    WeightStore *store = getOrLoadWeightStore(module, &error);
    std::vector<SelectedWeight> selected;
    if (!store || !selection.collect(module, &selected, &error)) {
      module.emitError() << "qopt-quantize-rtn: " << error;
      return signalPassFailure();
    }
    const int threads =
        std::max(1u, std::thread::hardware_concurrency());
    const bool progress = isatty(2);
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < selected.size(); ++i) {
      const SelectedWeight &s = selected[i];
      const WeightEntry *entry = store->find(s.name);
      if (!entry || !isFloat(entry->dtype) || entry->shape.size() != 2) {
        module.emitError() << "qopt-quantize-rtn: weight '" << s.name
                           << "' is not a 2-D float tensor of the weight store";
        return signalPassFailure();
      }
      const int64_t rows = entry->shape[0], cols = entry->shape[1];
      QuantizedMatrix q;
      {
        std::vector<float> w = store->readF32(*entry);
        releasePages(*entry);
        q = quantizeParallel(w.data(), rows, cols, s.format, threads);
      }
      if (!replaceWithQuantized(s.param, *store, q, &error)) {
        module.emitError() << "qopt-quantize-rtn: " << error;
        return signalPassFailure();
      }
      if (progress) {
        double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        llvm::errs() << llvm::format("\rqopt-quantize-rtn: %zu/%zu weights, %.1f s", i + 1,
                                     selected.size(), secs);
      }
    }
    if (progress && !selected.empty())
      llvm::errs() << "\n";
  }
};

} // namespace
