//===- Sampling.cu - greedy / temperature / top-k / top-p on the GPU -------===//
//
// One block of 1024 threads per row. Nothing is sorted: top-k and top-p are
// thresholds on the logit, found by a bitwise binary search over the logits'
// order-preserving 32-bit keys (32 passes over the row, each a block-wide
// count or probability mass):
//   top-k: the largest key t with  count(key >= t) >= k;
//   top-p: the largest key t with  mass(key >= t)  >= top_p * total mass,
// then the tokens with key >= both thresholds are the candidates. The draw
// walks the candidates in id order: each thread sums a contiguous slice,
// one warp scans the slice sums, and the thread whose interval holds
// u * total finds the token. Every sum is taken in a fixed order, so a seed
// gives the same token on every run.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/Sampling.h"

#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>

namespace qcuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

/// Order-preserving map of a float to uint32 (larger float, larger key).
/// -0 maps to +0's key: the two compare equal, so, as on the host, they tie
/// (greedy takes the lower id; top-k keeps both at the boundary).
__device__ __forceinline__ uint32_t orderedKey(float f) {
  uint32_t b = __float_as_uint(f);
  if (b == 0x80000000u)
    b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
/// 3"), first two output words.
__device__ __forceinline__ uint2 philox(uint64_t key, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return make_uint2(c0, c1);
}

/// Block-wide sum / max / count; every thread gets the result. `scratch`
/// holds kWarps values; the caller's loop provides no other barrier.
template <class T, class Op> __device__ T blockReduce(T v, Op op, T *scratch) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads(); // scratch is free (a previous reduction has read it)
  if (threadIdx.x % 32 == 0)
    scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T r = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w)
    r = op(r, scratch[w]);
  return r;
}

struct SampleRow {
  const float *x;
  int vocab;
  float maxL, invT;
  bool infMax; ///< the maximum is +inf: only +inf logits carry mass
  uint32_t minKey; ///< candidates have key >= minKey (and are not -inf/NaN)

  __device__ bool valid(float l) const { return l > -INFINITY; }
  __device__ bool kept(float l) const { return valid(l) && orderedKey(l) >= minKey; }
  __device__ float weight(float l) const {
    if (infMax)
      return l == INFINITY ? 1.0f : 0.0f;
    return expf((l - maxL) * invT);
  }
};

__global__ void __launch_bounds__(kThreads)
    sampleKernel(const float *logits, int vocab, int64_t ld, SamplingParamsDevice prm,
                 int32_t *tokens) {
  __shared__ float fScratch[kWarps];
  __shared__ uint32_t uScratch[kWarps];
  __shared__ unsigned long long pScratch[kWarps];
  __shared__ float sliceSum[kThreads];
  __shared__ int picked;

  const int row = blockIdx.x;
  const float *x = logits + row * ld;

  // Argmax, lowest id on ties: pack (key, ~id) so one max finds both.
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float l = x[i];
    if (l > -INFINITY) {
      const unsigned long long p =
          (static_cast<unsigned long long>(orderedKey(l)) << 32) | (0xffffffffu - uint32_t(i));
      best = p > best ? p : best;
    }
  }
  best = blockReduce(best, [](unsigned long long a, unsigned long long b) { return a > b ? a : b; },
                     pScratch);
  if (best == 0) { // no finite (or +inf) logit
    if (threadIdx.x == 0)
      tokens[row] = -1;
    return;
  }
  const int argmax = int(0xffffffffu - uint32_t(best & 0xffffffffu));
  const float temperature = prm.temperature ? prm.temperature[row] : 0.0f;
  if (temperature == 0.0f) {
    if (threadIdx.x == 0)
      tokens[row] = argmax;
    return;
  }

  SampleRow s{x, vocab, x[argmax], 1.0f / temperature, x[argmax] == INFINITY, 0u};
  auto count = [&](uint32_t t) {
    uint32_t c = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float l = x[i];
      c += (s.kept(l) && orderedKey(l) >= t) ? 1u : 0u;
    }
    return blockReduce(c, [](uint32_t a, uint32_t b) { return a + b; }, uScratch);
  };
  auto mass = [&](uint32_t t) {
    float m = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float l = x[i];
      if (s.kept(l) && orderedKey(l) >= t)
        m += s.weight(l);
    }
    return blockReduce(m, [](float a, float b) { return a + b; }, fScratch);
  };
  // Largest t with pred(t): pred holds at 0 and fails as t grows.
  auto largestKey = [&](auto pred) {
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = t | (1u << bit);
      if (pred(cand))
        t = cand;
    }
    return t;
  };

  const int k = prm.topK ? prm.topK[row] : 0;
  if (k > 0 && k < vocab)
    s.minKey = largestKey([&](uint32_t t) { return count(t) >= uint32_t(k); });
  const float topP = prm.topP ? prm.topP[row] : 1.0f;
  if (topP < 1.0f) {
    const float target = topP * mass(0);
    s.minKey = largestKey([&](uint32_t t) { return mass(t) >= target; });
  }

  // The draw: contiguous slices per thread, scanned in a fixed order.
  const int slice = (vocab + kThreads - 1) / kThreads;
  const int b = threadIdx.x * slice, e = min(vocab, b + slice);
  float mine = 0.0f;
  for (int i = b; i < e; ++i)
    if (s.kept(x[i]))
      mine += s.weight(x[i]);
  sliceSum[threadIdx.x] = mine;
  if (threadIdx.x == 0)
    picked = vocab;
  __syncthreads();
  if (threadIdx.x < 32) {
    // Lane j scans slices [32j, 32j+32) serially, then the lanes' totals.
    float run = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = sliceSum[threadIdx.x * 32 + j];
      sliceSum[threadIdx.x * 32 + j] = run; // exclusive prefix within the lane
      run += v;
    }
    float lanePrefix = run;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const float o = __shfl_up_sync(0xffffffffu, lanePrefix, off);
      if (int(threadIdx.x) >= off)
        lanePrefix += o;
    }
    const float total = __shfl_sync(0xffffffffu, lanePrefix, 31);
    lanePrefix -= run; // exclusive
    for (int j = 0; j < 32; ++j)
      sliceSum[threadIdx.x * 32 + j] += lanePrefix;
    if (threadIdx.x == 0)
      fScratch[0] = total;
  }
  __syncthreads();
  const float total = fScratch[0];
  const uint2 r = philox(prm.seed[row], prm.step[row]);
  const double u =
      double((uint64_t(r.x) << 21) ^ uint64_t(r.y >> 11)) * (1.0 / 9007199254740992.0); // 2^-53
  const double target = u * double(total);
  const double start = sliceSum[threadIdx.x];
  if (mine > 0.0f && target >= start && target < start + double(mine)) {
    double acc = start;
    int last = -1, choice = -1;
    for (int i = b; i < e && choice < 0; ++i) {
      if (!s.kept(x[i]))
        continue;
      last = i;
      acc += double(s.weight(x[i]));
      if (target < acc)
        choice = i;
    }
    atomicMin(&picked, choice >= 0 ? choice : last);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int t = picked;
    if (t >= vocab) { // rounding left the target in no slice: the last candidate
      for (int i = vocab - 1; i >= 0; --i)
        if (s.kept(x[i]) && s.weight(x[i]) > 0.0f) {
          t = i;
          break;
        }
      if (t >= vocab)
        t = argmax;
    }
    tokens[row] = t;
  }
}

bool fail(std::string *error, const std::string &m) {
  if (error)
    *error = "sampling: " + m;
  return false;
}

} // namespace

bool sampleTokens(const float *logits, int32_t batch, int32_t vocab, int64_t ldLogits,
                  const SamplingParamsDevice &params, int32_t *tokens, cudaStream_t stream,
                  std::string *error) {
  if (batch < 0 || vocab <= 0 || ldLogits < vocab)
    return fail(error, "batch " + std::to_string(batch) + ", vocab " + std::to_string(vocab) +
                           ", row stride " + std::to_string(ldLogits) + " are inconsistent");
  if (batch == 0)
    return true;
  if (!logits || !tokens)
    return fail(error, "logits or tokens is null");
  if (params.temperature && (!params.seed || !params.step))
    return fail(error, "non-greedy sampling needs per-request seeds and steps");
  sampleKernel<<<batch, kThreads, 0, stream>>>(logits, vocab, ldLogits, params, tokens);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return fail(error, std::string("launch failed: ") + cudaGetErrorString(e));
  return true;
}

} // namespace qcuda
