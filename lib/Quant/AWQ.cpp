//===- AWQ.cpp - AWQ layer by layer ----------------------------------===//
//
// Per decoder layer, as AutoAWQ's quantizer does it:
//  1. run the layer on the calibration hidden states, gathering for each
//     distinct linear input its mean |x| per channel and its Gram matrix;
//  2. for each scaling set, on the original weights, pick alpha on the
//     grid minimizing the set's quantized output error;
//  3. fold every chosen s (1/s into the producer, s into the weights);
//  4. search clipping ratios (not for q and k: their error passes through
//     the attention scores, which a per-linear error does not see);
//  5. quantize and run the layer again, so that layer i + 1 calibrates on
//     what the quantized layer i feeds it.
// The sets: input_layernorm -> q, k, v; v -> o (v's output rows, which
// with grouped-query attention reach several query heads: the scale of a
// kv channel is shared by the o columns of every query head reading it);
// post_attention_layernorm -> gate, up; up -> down (silu(g) * (u / s) is
// (silu(g) * u) / s, so up's rows carry 1/s exactly).
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/AWQ.h"

#include "qopt/Quant/Calibration.h"
#include "qopt/Quant/GPTQ.h"
#include "qopt/Quant/ScaleFolding.h"
#include "qopt/Quant/StoreAccess.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>

using namespace mlir;

namespace qopt::quant {

namespace {

constexpr const char *kSuffix = ".awq";

/// Statistics of one linear input over the calibration tokens.
struct InputStats {
  explicit InputStats(int64_t k) : gram(k), absSum(size_t(k), 0.0) {}
  HessianAccumulator gram;
  std::vector<double> absSum;
  int64_t rows = 0;

  void add(const float *x, int64_t n) {
    const int64_t k = gram.cols();
    gram.add(x, n);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < k; ++j)
        absSum[size_t(j)] += std::fabs(x[r * k + j]);
    rows += n;
  }
  /// X^T X / rows (the scale of the error does not change any argmin).
  std::vector<float> gramF32() const {
    std::vector<double> h = gram.hessian(); // 2 X^T X / rows
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i)
      f[i] = float(h[i] * 0.5);
    return f;
  }
  std::vector<double> meanAbs() const {
    std::vector<double> m(absSum.size());
    for (size_t j = 0; j < m.size(); ++j)
      m[j] = rows ? absSum[j] / double(rows) : 0.0;
    return m;
  }
};

/// A member of a scaling set: a linear reading the shared input.
struct Member {
  qllm::LinearOp linear;
  const SelectedWeight *selected = nullptr; ///< null: stays float
};

/// Linears sharing an input, and the op whose output channels feed it.
struct ScaleSet {
  std::string name;
  Operation *producer = nullptr; ///< qllm.rms_norm or qllm.linear
  std::vector<Member> members;
  /// Query heads per kv head when the producer is v and the members read
  /// the attention output: s is chosen per kv channel and repeated.
  int64_t repeat = 1, headDim = 0;
  /// Chosen scale of each member input channel.
  std::vector<float> scales;
};

bool isFloatParam(Value v) {
  auto p = v.getDefiningOp<qllm::ParamOp>();
  return p && p.getResult().hasOneUse();
}

/// H' = D^-1 H D^-1 for the inputs x / s.
std::vector<float> scaledGram(const std::vector<float> &h, const std::vector<float> &s) {
  const size_t k = s.size();
  std::vector<float> r(h.size());
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < k; ++j)
      r[i * k + j] = h[i * k + j] / (s[i] * s[j]);
  return r;
}

/// Kv channel (reduced) -> member channel (expanded) for a tied set.
std::vector<float> expand(const std::vector<float> &reduced, int64_t repeat, int64_t headDim) {
  if (repeat == 1)
    return reduced;
  const int64_t kvHeads = int64_t(reduced.size()) / headDim;
  std::vector<float> out(size_t(kvHeads * repeat * headDim));
  for (int64_t h = 0; h < kvHeads * repeat; ++h)
    for (int64_t d = 0; d < headDim; ++d)
      out[size_t(h * headDim + d)] = reduced[size_t((h / repeat) * headDim + d)];
  return out;
}

/// Grid search of alpha for one set (AutoAWQ's _search_best_scale with
/// the per-linear output error): s = mean|x|^alpha, normalized by
/// sqrt(max * min) so the weights keep their overall magnitude.
bool searchSet(ScaleSet &set, const InputStats &stats, const WeightStore &store,
               const AWQConfig &config, AWQSetChoice *choice, std::string *error) {
  std::vector<double> mean = stats.meanAbs();
  // A tied set averages |x| over the query heads sharing a kv channel.
  std::vector<double> reduced = mean;
  if (set.repeat > 1) {
    const int64_t kvDim = int64_t(mean.size()) / set.repeat;
    reduced.assign(size_t(kvDim), 0.0);
    for (size_t c = 0; c < mean.size(); ++c) {
      int64_t h = int64_t(c) / set.headDim, d = int64_t(c) % set.headDim;
      reduced[size_t((h / set.repeat) * set.headDim + d)] += mean[c] / double(set.repeat);
    }
  }
  std::vector<float> h = stats.gramF32();
  std::vector<std::vector<float>> weights;
  for (const Member &m : set.members) {
    weights.emplace_back();
    if (m.selected && !readLinearWeight(m.linear, store, &weights.back(), error))
      return false;
  }
  const int64_t k = int64_t(mean.size());
  // Duo scaling's weight side: |w| / absmax of its group, averaged over
  // every row of every member, reduced like the activations.
  std::vector<double> wmean(size_t(k), 0.0);
  if (config.duoScaling) {
    int64_t rowsTotal = 0;
    for (size_t i = 0; i < set.members.size(); ++i) {
      std::vector<float> w;
      if (!readLinearWeight(set.members[i].linear, store, &w, error))
        return false;
      const Format f = set.members[i].selected ? set.members[i].selected->format : Format();
      const int64_t rows = int64_t(w.size()) / k, groups = f.numGroups(k);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < groups; ++g) {
          int64_t b = f.groupBegin(g, k), e = f.groupEnd(g, k);
          float amax = 0;
          for (int64_t c = b; c < e; ++c)
            amax = std::max(amax, std::fabs(w[size_t(r * k + c)]));
          for (int64_t c = b; c < e; ++c)
            wmean[size_t(c)] += std::fabs(w[size_t(r * k + c)]) / (amax + 1e-6);
        }
      rowsTotal += rows;
    }
    for (double &x : wmean)
      x /= double(std::max<int64_t>(rowsTotal, 1));
  }
  std::vector<double> wreduced = wmean;
  if (set.repeat > 1) {
    const int64_t kvDim = k / set.repeat;
    wreduced.assign(size_t(kvDim), 0.0);
    for (int64_t c = 0; c < k; ++c) {
      int64_t h = c / set.headDim, d = c % set.headDim;
      wreduced[size_t((h / set.repeat) * set.headDim + d)] += wmean[size_t(c)] / double(set.repeat);
    }
  }
  auto errorOf = [&](const std::vector<float> &s) {
    std::vector<float> hs = scaledGram(h, s);
    double total = 0;
    for (size_t i = 0; i < set.members.size(); ++i) {
      const Member &m = set.members[i];
      if (!m.selected)
        continue;
      std::vector<float> ws = weights[i];
      const int64_t rows = int64_t(ws.size()) / k;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < k; ++c)
          ws[size_t(r * k + c)] *= s[size_t(c)];
      total += outputError(ws.data(), rows, k, m.selected->format, {}, hs, config.threads);
    }
    return total;
  };
  double bestErr = INFINITY, bestAlpha = 0;
  std::vector<float> best(size_t(k), 1.0f);
  for (int64_t i = 0; i < config.gridSize; ++i) {
    double alpha = double(i) / double(config.gridSize);
    std::vector<float> r(reduced.size());
    float mx = 0, mn = INFINITY;
    for (size_t c = 0; c < r.size(); ++c) {
      double v = std::pow(reduced[c], alpha);
      if (config.duoScaling)
        v /= std::pow(wreduced[c], 1.0 - alpha) + 1e-4;
      r[c] = float(std::max(v, 1e-4));
      mx = std::max(mx, r[c]);
      mn = std::min(mn, r[c]);
    }
    float norm = std::sqrt(mx * mn);
    for (float &x : r)
      x /= norm;
    std::vector<float> s = expand(r, set.repeat, set.headDim);
    double err = errorOf(s);
    if (i == 0)
      choice->rtnError = err; // alpha = 0: s = 1, plain RTN
    if (err < bestErr) {
      bestErr = err;
      bestAlpha = alpha;
      best = s;
    }
  }
  set.scales = std::move(best);
  choice->alpha = bestAlpha;
  choice->scaledError = bestErr;
  return true;
}

/// Folds a set's scales: 1/s into the producer, s into the members.
bool foldSet(const ScaleSet &set, WeightStore &store, std::string *error) {
  if (auto norm = dyn_cast<qllm::RMSNormOp>(set.producer)) {
    if (!divideNormWeight(norm, set.scales, store, kSuffix, error))
      return false;
  } else {
    // The producer's rows are the kv channels: one scale per kv channel.
    std::vector<float> rows = set.scales;
    if (set.repeat > 1) {
      const int64_t kvDim = int64_t(set.scales.size()) / set.repeat;
      rows.resize(size_t(kvDim));
      for (int64_t c = 0; c < kvDim; ++c) {
        int64_t g = c / set.headDim, d = c % set.headDim;
        rows[size_t(c)] = set.scales[size_t(g * set.repeat * set.headDim + d)];
      }
    }
    if (!divideLinearRows(cast<qllm::LinearOp>(set.producer), rows, store, kSuffix, error))
      return false;
  }
  for (const Member &m : set.members)
    if (!scaleLinearColumns(m.linear, set.scales, store, kSuffix, error))
      return false;
  return true;
}

} // namespace

bool runAWQ(ModuleOp module, WeightStore &store, const WeightSelection &selection,
            std::vector<std::vector<int32_t>> samples, const AWQConfig &config,
            std::vector<AWQSetChoice> *choices, std::string *error) {
  if (config.gridSize < 1 || config.clipGrid < 1 || !(config.maxShrink >= 0) ||
      !(config.maxShrink < 1)) {
    *error = "AWQ: the grid sizes must be positive and the clip shrink in [0, 1)";
    return false;
  }
  std::vector<SelectedWeight> selected;
  if (!selection.collect(module, &selected, error))
    return false;
  llvm::DenseMap<Operation *, size_t> selectedIndex;
  for (size_t i = 0; i < selected.size(); ++i)
    selectedIndex[selected[i].param] = i;
  std::vector<char> done(selected.size(), 0);
  auto selectedOf = [&](qllm::LinearOp lin) -> const SelectedWeight * {
    auto param = lin.getWeight().getDefiningOp<qllm::ParamOp>();
    auto it = param ? selectedIndex.find(param) : selectedIndex.end();
    return it == selectedIndex.end() ? nullptr : &selected[it->second];
  };

  auto runner = LayerwiseRunner::create(module, store, std::move(samples), config.threads, error);
  if (!runner)
    return false;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t numLayers = int64_t(runner->layers().size());
  for (int64_t li = 0; li < numLayers; ++li) {
    DecoderLayer layer = runner->layers()[size_t(li)];
    const int64_t heads = layer.attention.getNumHeads();
    const int64_t kvHeads = layer.attention.getNumKvHeads();
    const int64_t headDim = layer.attention.getHeadDim();

    // The sets whose producer and members can all be rescaled.
    std::vector<ScaleSet> sets;
    auto addSet = [&](const char *name, Operation *producer,
                      std::initializer_list<qllm::LinearOp> linears, int64_t repeat) {
      ScaleSet set;
      set.name = name;
      set.producer = producer;
      set.repeat = repeat;
      set.headDim = headDim;
      bool any = false, ok = isFloatParam(producer->getOperand(1));
      for (qllm::LinearOp lin : linears) {
        ok = ok && isFloatParam(lin.getWeight());
        set.members.push_back({lin, selectedOf(lin)});
        any = any || set.members.back().selected;
      }
      if (ok && any)
        sets.push_back(std::move(set));
    };
    addSet("qkv", layer.inputNorm, {layer.q, layer.k, layer.v}, 1);
    // v's bias, if any, is divided with its rows; GQA ties the scales of
    // the query heads that read one kv head.
    addSet("o", layer.v, {layer.o}, heads / kvHeads);
    addSet("gate_up", layer.postAttentionNorm, {layer.gate, layer.up}, 1);
    addSet("down", layer.up, {layer.down}, 1);

    // The layer's selected linears (quantized after the folding).
    std::vector<qllm::LinearOp> toQuantize;
    for (qllm::LinearOp lin :
         {layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down})
      if (selectedOf(lin))
        toQuantize.push_back(lin);

    if (!toQuantize.empty()) {
      // 1. Statistics of each distinct linear input.
      llvm::DenseMap<Value, InputStats *> statsOf;
      llvm::DenseMap<Operation *, InputStats *> statsByOp;
      std::vector<std::unique_ptr<InputStats>> owned;
      for (qllm::LinearOp lin :
           {layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down}) {
        Value in = lin.getInput();
        if (statsOf.count(in))
          continue;
        int64_t k = cast<RankedTensorType>(in.getType()).getShape().back();
        owned.push_back(std::make_unique<InputStats>(k));
        statsOf[in] = owned.back().get();
        statsByOp[lin] = owned.back().get();
      }
      auto observer = [&](Operation *op, const Tensor &in, const Tensor &) {
        auto it = statsByOp.find(op);
        if (it == statsByOp.end())
          return;
        int64_t k = it->second->gram.cols();
        it->second->add(in.data.data(), in.numElements() / k);
      };
      if (!runner->observe(li, observer, error))
        return false;

      // 2-3. Search every set on the original weights, then fold them all.
      for (ScaleSet &set : sets) {
        AWQSetChoice choice;
        choice.layer = li;
        choice.set = set.name;
        if (!searchSet(set, *statsOf.lookup(set.members[0].linear.getInput()), store, config,
                       &choice, error))
          return false;
        if (choices)
          choices->push_back(choice);
      }
      for (const ScaleSet &set : sets)
        if (!foldSet(set, store, error))
          return false;

      // 4-5. Clip and quantize, each linear on its scaled inputs.
      if (!config.foldOnly) {
        for (qllm::LinearOp lin : toQuantize) {
          const SelectedWeight *sel = selectedOf(lin);
          std::vector<float> w;
          if (!readLinearWeight(lin, store, &w, error))
            return false;
          const int64_t k = cast<RankedTensorType>(lin.getInput().getType()).getShape().back();
          const int64_t rows = int64_t(w.size()) / k;
          std::vector<float> clips;
          if (config.clipSearch && (config.clipQK || (lin != layer.q && lin != layer.k))) {
            std::vector<float> s(size_t(k), 1.0f);
            for (const ScaleSet &set : sets)
              for (const Member &m : set.members)
                if (m.linear == lin)
                  s = set.scales;
            std::vector<float> hs = scaledGram(statsOf.lookup(lin.getInput())->gramF32(), s);
            clips = searchClipRatios(w.data(), rows, k, sel->format, hs, config.clipGrid,
                                     config.maxShrink, config.threads);
          }
          QuantizedMatrix q = quantizeClipped(w.data(), rows, k, sel->format, clips);
          auto param = lin.getWeight().getDefiningOp<qllm::ParamOp>();
          std::string scaledName = param.getName().str();
          param.setName(sel->name);
          if (!replaceWithQuantized(param, store, q, error))
            return false;
          if (scaledName != sel->name)
            store.erase(scaledName);
          done[size_t(sel - selected.data())] = 1;
        }
      }
    }
    // Layer i + 1 sees what (quantized) layer i produces.
    if (li + 1 < numLayers && !runner->advance(li, error))
      return false;
    if (config.progress) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double eta = secs / double(li + 1) * double(numLayers - li - 1);
      llvm::errs() << llvm::format("\rawq: layer %lld/%lld, %.1f s elapsed, eta %.0f s   ",
                                   (long long)(li + 1), (long long)numLayers, secs, eta);
    }
  }
  if (config.progress)
    llvm::errs() << "\n";
  if (config.foldOnly)
    return true;

  // Outside the layers (embedding, lm_head when asked): round to nearest.
  for (size_t i = 0; i < selected.size(); ++i) {
    if (done[i])
      continue;
    SelectedWeight s = selected[i];
    const WeightEntry *entry = store.find(s.param.getName().str());
    if (!entry || !isFloat(entry->dtype) || entry->shape.size() != 2) {
      *error = "weight '" + s.name + "' is not a 2-D float tensor of the weight store";
      return false;
    }
    QuantizedMatrix q;
    {
      std::vector<float> w = store.readF32(*entry);
      releasePages(*entry);
      q = quantizeRTN(w.data(), entry->shape[0], entry->shape[1], s.format);
    }
    std::string scaledName = s.param.getName().str();
    s.param.setName(s.name);
    if (!replaceWithQuantized(s.param, store, q, error))
      return false;
    if (scaledName != s.name)
      store.erase(scaledName);
  }
  return true;
}

} // namespace qopt::quant
