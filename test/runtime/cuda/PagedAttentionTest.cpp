//===- PagedAttentionTest.cpp - CUDA paged attention vs a double reference ===//
//
// Random K/V are encoded into a paged pool on the host (AttentionTestSupport
// codec, the pool's definition) with shuffled block tables; the reference
// decodes the same bytes and computes causal softmax attention in double.
// Shapes walk the block boundaries (contexts 1, 15, 16, 17, 300, 1000),
// head_dim 64 / 128, GQA 32/8, MQA 32/1 and 8/1, no grouping, every pool
// type; prefill chunks start mid-block, through the FMA kernel (every type)
// and the tensor-core one (bf16 / f16), which is also compared with the FMA
// kernel on long chunks. Outputs are poisoned with NaN first and compared
// with EXPECT_LE on |diff|, which NaN fails.
//
//===----------------------------------------------------------------------===//
#include "AttentionTestSupport.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <sstream>

namespace qcuda::test {
namespace {

constexpr int kBlock = 16;
const KVDType kAllTypes[] = {KVDType::BF16, KVDType::F16, KVDType::I8, KVDType::FP8E4M3};

/// A host pool, its device copy, and sequences laid out in it.
struct PagedSetup {
  int kvHeads = 0, headDim = 0, numBlocks = 0;
  KVDType type = KVDType::BF16;
  KVCodecRef codec{KVDType::BF16};
  std::vector<uint8_t> k, v; ///< [numBlocks, 16, kvHeads, headDim] elements
  std::vector<float> kScale, vScale;
  std::vector<int32_t> contextLens, tableStart, table;

  PagedSetup(const std::vector<int32_t> &contexts, int kvHeads_, int headDim_, KVDType t,
             std::mt19937 &rng)
      : kvHeads(kvHeads_), headDim(headDim_), type(t), codec{t}, contextLens(contexts) {
    tableStart.push_back(0);
    for (int32_t c : contexts) {
      const int nb = (c + kBlock - 1) / kBlock;
      for (int i = 0; i < nb; ++i)
        table.push_back(numBlocks++);
      tableStart.push_back(int32_t(table.size()));
    }
    numBlocks += 3; // blocks no sequence owns
    std::vector<int32_t> perm(numBlocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int32_t &b : table)
      b = perm[b];
    // Scales that keep |x| <= 1 inside int8's 127 and fp8's 448 (no
    // saturation), different per head so a wrong head's scale shows.
    std::uniform_real_distribution<float> scaleDist(1.0f, 1.5f), val(-1.0f, 1.0f);
    const float unit = t == KVDType::FP8E4M3 ? 1.0f / 400 : 1.0f / 127;
    for (int h = 0; h < kvHeads; ++h) {
      kScale.push_back(unit * scaleDist(rng));
      vScale.push_back(unit * scaleDist(rng));
    }
    const size_t n = size_t(numBlocks) * kBlock * kvHeads * headDim;
    k.resize(n * codec.bytes());
    v.resize(n * codec.bytes());
    for (size_t i = 0; i < n; ++i) {
      const int h = int(i / headDim % kvHeads);
      codec.store(&k[i * codec.bytes()], val(rng), kScale[h]);
      codec.store(&v[i * codec.bytes()], val(rng), vScale[h]);
    }
  }

  size_t elemIndex(int seq, int pos, int head, int d) const {
    const int32_t block = table[tableStart[seq] + pos / kBlock];
    return ((size_t(block) * kBlock + pos % kBlock) * kvHeads + head) * headDim + d;
  }
  double kAt(int seq, int pos, int head, int d) const {
    return codec.load(&k[elemIndex(seq, pos, head, d) * codec.bytes()], kScale[head]);
  }
  double vAt(int seq, int pos, int head, int d) const {
    return codec.load(&v[elemIndex(seq, pos, head, d) * codec.bytes()], vScale[head]);
  }

  /// Softmax attention of one query row over positions 0..last, in double.
  /// absWeighted (optional): sum_p w_p |v_p[d]|, the scale of the error that
  /// rounding the weights causes.
  std::vector<double> reference(const float *q, int seq, int kvHead, int last,
                                std::vector<double> *absWeighted = nullptr) const {
    std::vector<double> s(last + 1), out(headDim, 0.0);
    double m = -INFINITY;
    for (int p = 0; p <= last; ++p) {
      double dot = 0;
      for (int d = 0; d < headDim; ++d)
        dot += double(q[d]) * kAt(seq, p, kvHead, d);
      s[p] = dot / std::sqrt(double(headDim));
      m = std::max(m, s[p]);
    }
    double sum = 0;
    for (int p = 0; p <= last; ++p)
      sum += (s[p] = std::exp(s[p] - m));
    if (absWeighted)
      absWeighted->assign(headDim, 0.0);
    for (int p = 0; p <= last; ++p)
      for (int d = 0; d < headDim; ++d) {
        const double v = vAt(seq, p, kvHead, d);
        out[d] += s[p] / sum * v;
        if (absWeighted)
          (*absWeighted)[d] += s[p] / sum * std::fabs(v);
      }
    return out;
  }
};

/// Device copies of a PagedSetup.
struct DevicePool {
  DeviceBuffer<uint8_t> k, v;
  DeviceBuffer<float> kScale, vScale;
  DeviceBuffer<int32_t> contextLens, tableStart, table;
  explicit DevicePool(const PagedSetup &s)
      : k(s.k), v(s.v), kScale(s.kScale), vScale(s.vScale), contextLens(s.contextLens),
        tableStart(s.tableStart), table(s.table) {}
  PagedKV kv(const PagedSetup &s) const {
    PagedKV p;
    p.k = k.get();
    p.v = v.get();
    p.numBlocks = s.numBlocks;
    p.blockSize = kBlock;
    p.kvHeads = s.kvHeads;
    p.headDim = s.headDim;
    p.dtype = s.type;
    p.kScale = kScale.get();
    p.vScale = vScale.get();
    return p;
  }
  PagedSequences seqs(const PagedSetup &s) const {
    PagedSequences q;
    q.numSeqs = int32_t(s.contextLens.size());
    q.contextLens = contextLens.get();
    q.blockTableStart = tableStart.get();
    q.blockTable = table.get();
    q.maxContextLen = *std::max_element(s.contextLens.begin(), s.contextLens.end());
    return q;
  }
};

/// bf16-representable random q rows (so host and device see the same values).
std::vector<float> randomRows(size_t n, std::mt19937 &rng, float amp) {
  std::uniform_real_distribution<float> d(-amp, amp);
  std::vector<float> v(n);
  for (float &x : v)
    x = qrt::bf16ToF32(qrt::f32ToBf16(d(rng)));
  return v;
}

/// |got - want| bound: the bf16 rounding of the output plus fp32 sums over
/// `n` positions.
double tolerance(double want, int n) {
  return std::fabs(want) * 0x1p-8 + 1e-3 + 2e-5 * std::sqrt(double(n));
}

/// `contexts` empty: `batch` of them from a pattern over block boundaries.
void runDecode(int batch, int headDim, int numHeads, int kvHeads, KVDType type, uint32_t seed,
               std::vector<int32_t> contexts = {}) {
  if (!contexts.empty())
    batch = int(contexts.size());
  std::ostringstream what;
  what << "decode batch " << batch << " head_dim " << headDim << " heads " << numHeads << "/"
       << kvHeads << " kv " << kvName(type);
  SCOPED_TRACE(what.str());
  std::mt19937 rng(seed);
  const int pattern[] = {1, 15, 16, 17, 300, 1000};
  for (int i = 0; contexts.empty() && i < batch; ++i)
    contexts.push_back(pattern[(i + seed) % 6]);
  PagedSetup setup(contexts, kvHeads, headDim, type, rng);
  DevicePool dev(setup);

  // q rows padded to a wider stride, as when q sits in a fused qkv row.
  AttentionHeads heads;
  heads.numHeads = numHeads;
  heads.qStride = int64_t(numHeads) * headDim + 2 * kvHeads * headDim;
  heads.outStride = int64_t(numHeads) * headDim + 8;
  const std::vector<float> q = randomRows(size_t(batch) * heads.qStride, rng, 3.0f);
  DeviceBuffer<uint16_t> dq(toBf16(q));
  DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(size_t(batch) * heads.outStride, kBf16NaN));
  const PagedKV kv = dev.kv(setup);
  const PagedSequences seqs = dev.seqs(setup);
  DeviceBuffer<uint8_t> ws(decodeAttentionWorkspaceBytes(kv, seqs, heads));
  std::string err;
  ASSERT_TRUE(decodeAttention(kv, seqs, heads, dq.get(), dout.get(), ws.get(), ws.size(), nullptr,
                              &err))
      << err;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out = dout.download();

  const int group = numHeads / kvHeads;
  for (int s = 0; s < batch; ++s)
    for (int h = 0; h < numHeads; ++h) {
      const std::vector<double> want =
          setup.reference(&q[size_t(s) * heads.qStride + size_t(h) * headDim], s, h / group,
                          contexts[s] - 1);
      for (int d = 0; d < headDim; ++d) {
        const double got = qrt::bf16ToF32(out[size_t(s) * heads.outStride + size_t(h) * headDim + d]);
        ASSERT_LE(std::fabs(got - want[d]), tolerance(want[d], contexts[s]))
            << "seq " << s << " (context " << contexts[s] << ") head " << h << " d " << d;
      }
    }
}

TEST(PagedDecodeAttention, MatchesReferenceOverShapesAndTypes) {
  QCUDA_REQUIRE_DEVICE();
  uint32_t seed = 1;
  for (KVDType t : kAllTypes)
    for (int hd : {64, 128}) {
      runDecode(7, hd, 32, 8, t, seed++); // GQA 4
      runDecode(3, hd, 32, 1, t, seed++); // MQA, group 32 in 4 head tiles
    }
  for (int hd : {64, 128}) {
    runDecode(1, hd, 8, 1, KVDType::BF16, seed++);      // MQA, group 8
    runDecode(7, hd, 4, 4, KVDType::FP8E4M3, seed++);   // no grouping
    runDecode(3, hd, 12, 6, KVDType::I8, seed++);       // group 2
    runDecode(7, hd, 24, 4, KVDType::F16, seed++);      // group 6: a partial head tile
  }
}

/// A sequence with context 0 gets zeros (the merge writes them; no chunk
/// block runs for it), next to sequences that have work.
TEST(PagedDecodeAttention, EmptyContextGivesZeros) {
  QCUDA_REQUIRE_DEVICE();
  runDecode(0, 128, 32, 8, KVDType::BF16, 50, {0, 17, 0, 300});
  runDecode(0, 64, 8, 1, KVDType::I8, 51, {0, 1});
}

/// A launch fixed for a much longer context than the batch has (as a CUDA
/// graph captures it): blocks past a sequence's context exit, narrow grids
/// loop over chunks, and the output is bitwise what a launch sized from the
/// batch gives with the same chunk.
TEST(PagedDecodeAttention, FixedLaunchForALongerContextGivesTheSameOutput) {
  QCUDA_REQUIRE_DEVICE();
  std::mt19937 rng(7);
  const std::vector<int32_t> contexts = {1, 17, 300, 1000, 64};
  const int batch = int(contexts.size()), headDim = 128, numHeads = 32, kvHeads = 8;
  PagedSetup setup(contexts, kvHeads, headDim, KVDType::BF16, rng);
  DevicePool dev(setup);
  AttentionHeads heads;
  heads.numHeads = numHeads;
  heads.qStride = heads.outStride = int64_t(numHeads) * headDim;
  const std::vector<float> q = randomRows(size_t(batch) * heads.qStride, rng, 3.0f);
  DeviceBuffer<uint16_t> dq(toBf16(q));
  const PagedKV kv = dev.kv(setup);
  const PagedSequences tight = dev.seqs(setup);
  PagedSequences wide = tight;
  wide.maxContextLen = 64 * 1024;

  auto run = [&](const PagedSequences &seqs, const DecodeLaunch &launch) {
    DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(size_t(batch) * heads.outStride, kBf16NaN));
    DeviceBuffer<uint8_t> ws(decodeAttentionWorkspaceBytes(kv, seqs, heads, launch));
    std::string err;
    EXPECT_TRUE(decodeAttention(kv, seqs, heads, dq.get(), dout.get(), ws.get(), ws.size(),
                                nullptr, &err, launch))
        << err;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return dout.download();
  };
  const DecodeLaunch fixed = decodeAttentionFixedLaunch(kv, wide, heads);
  ASSERT_GE(fixed.chunk, 64);
  ASSERT_GE(fixed.splitBlocks, 1);
  DecodeLaunch sameChunk;
  sameChunk.chunk = fixed.chunk;
  const std::vector<uint16_t> want = run(tight, sameChunk);
  EXPECT_EQ(run(wide, fixed), want) << "fixed launch (chunk " << fixed.chunk << ", "
                                    << fixed.splitBlocks << " split blocks)";
  // One block per (sequence, head tile) looping over every chunk, and a
  // grid wider than any context: the same bits.
  DecodeLaunch narrow = sameChunk, widest = sameChunk;
  narrow.splitBlocks = 1;
  widest.splitBlocks = (wide.maxContextLen + sameChunk.chunk - 1) / sameChunk.chunk;
  EXPECT_EQ(run(wide, narrow), want) << "one split block";
  EXPECT_EQ(run(wide, widest), want) << "a split block per chunk of 64k";
  // And the output is attention (the reference within tolerance).
  const int group = numHeads / kvHeads;
  for (int s = 0; s < batch; ++s)
    for (int h = 0; h < numHeads; ++h) {
      const std::vector<double> ref = setup.reference(
          &q[size_t(s) * heads.qStride + size_t(h) * headDim], s, h / group, contexts[s] - 1);
      for (int d = 0; d < headDim; ++d) {
        const size_t i = size_t(s) * heads.outStride + size_t(h) * headDim + d;
        const double got = qrt::bf16ToF32(want[i]);
        ASSERT_LE(std::fabs(got - ref[d]), tolerance(ref[d], contexts[s]))
            << "seq " << s << " head " << h << " d " << d;
      }
    }
  DecodeLaunch bad;
  bad.chunk = 96;
  std::string err;
  EXPECT_FALSE(decodeAttention(kv, tight, heads, dq.get(), dq.get(), nullptr, 0, nullptr, &err,
                               bad));
  EXPECT_NE(err.find("chunk 96"), std::string::npos) << err;
}

TEST(PagedDecodeAttention, RejectsBadShapes) {
  PagedKV kv;
  kv.k = kv.v = reinterpret_cast<void *>(16);
  kv.kvHeads = 8;
  kv.headDim = 96;
  PagedSequences seqs;
  seqs.numSeqs = 1;
  seqs.contextLens = seqs.blockTableStart = seqs.blockTable = reinterpret_cast<int32_t *>(16);
  AttentionHeads heads;
  heads.numHeads = 32;
  heads.qStride = heads.outStride = 32 * 96;
  std::string err;
  EXPECT_FALSE(decodeAttention(kv, seqs, heads, nullptr, nullptr, nullptr, 0, nullptr, &err));
  EXPECT_NE(err.find("head_dim 96"), std::string::npos) << err;
  kv.headDim = 128;
  heads.numHeads = 30;
  heads.qStride = heads.outStride = 30 * 128;
  EXPECT_FALSE(decodeAttention(kv, seqs, heads, nullptr, nullptr, nullptr, 0, nullptr, &err));
  EXPECT_NE(err.find("not a multiple"), std::string::npos) << err;
  heads.numHeads = 32;
  heads.qStride = heads.outStride = 32 * 128;
  kv.dtype = KVDType::FP8E4M3;
  EXPECT_FALSE(prefillAttention(kv, seqs, nullptr, 1, heads, nullptr, nullptr, nullptr, &err));
  EXPECT_NE(err.find("scales"), std::string::npos) << err;
}

const char *kernelName(PrefillKernel k) {
  return k == PrefillKernel::TensorCore ? "tensor-core" : k == PrefillKernel::Fma ? "FMA" : "auto";
}

/// The extra error of the tensor-core kernel: P is rounded to the pool's
/// 16-bit type before P V while the row sum adds the unrounded fp32 weights,
/// so output d gets sum_p (P~_p - P_p) v_p[d] / L with |P~_p - P_p| <=
/// u P_p (u = 2^-8 for bf16's 8-bit significand, 2^-11 for f16's 11), at
/// most u * sum_p w_p |v_p[d]| (absWeighted). f16 weights below 2^-14 are
/// subnormal: at most 2^-25 absolute each, <= n * 2^-25 * max|v| (1 here)
/// after the division by L >= 1.
double pRoundingBound(KVDType type, double absWeighted, int n) {
  const double u = type == KVDType::F16 ? 0x1p-11 : 0x1p-8;
  return u * absWeighted + (type == KVDType::F16 ? n * 0x1p-25 : 0.0);
}

/// Chunks of new tokens after cached ones: (cached, new) per sequence.
void runPrefill(const std::vector<std::pair<int, int>> &chunks, int headDim, int numHeads,
                int kvHeads, KVDType type, uint32_t seed,
                PrefillKernel kernel = PrefillKernel::Fma) {
  std::ostringstream what;
  what << "prefill (" << kernelName(kernel) << ") head_dim " << headDim << " heads " << numHeads
       << "/" << kvHeads << " kv " << kvName(type);
  SCOPED_TRACE(what.str());
  std::mt19937 rng(seed);
  std::vector<int32_t> contexts, queryStart{0};
  int maxQuery = 0;
  for (auto [cached, fresh] : chunks) {
    contexts.push_back(cached + fresh);
    queryStart.push_back(queryStart.back() + fresh);
    maxQuery = std::max(maxQuery, fresh);
  }
  const int T = queryStart.back();
  PagedSetup setup(contexts, kvHeads, headDim, type, rng);
  DevicePool dev(setup);
  AttentionHeads heads;
  heads.numHeads = numHeads;
  heads.qStride = int64_t(numHeads) * headDim + 2 * kvHeads * headDim;
  heads.outStride = int64_t(numHeads) * headDim;
  const std::vector<float> q = randomRows(size_t(T) * heads.qStride, rng, 3.0f);
  DeviceBuffer<uint16_t> dq(toBf16(q));
  DeviceBuffer<uint16_t> dout(std::vector<uint16_t>(size_t(T) * heads.outStride, kBf16NaN));
  DeviceBuffer<int32_t> dstart(queryStart);
  std::string err;
  ASSERT_TRUE(prefillAttention(dev.kv(setup), dev.seqs(setup), dstart.get(), maxQuery, heads,
                               dq.get(), dout.get(), nullptr, &err, kernel))
      << err;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out = dout.download();
  const int group = numHeads / kvHeads;
  std::vector<double> absWeighted;
  for (size_t s = 0; s < chunks.size(); ++s)
    for (int j = 0; j < chunks[s].second; ++j) {
      const int t = queryStart[s] + j, pos = chunks[s].first + j;
      for (int h = 0; h < numHeads; ++h) {
        const std::vector<double> want =
            setup.reference(&q[size_t(t) * heads.qStride + size_t(h) * headDim], int(s),
                            h / group, pos, &absWeighted);
        for (int d = 0; d < headDim; ++d) {
          const double got = qrt::bf16ToF32(out[size_t(t) * heads.outStride + size_t(h) * headDim + d]);
          const double tol = tolerance(want[d], pos + 1) +
                             (kernel == PrefillKernel::Fma
                                  ? 0.0
                                  : pRoundingBound(type, absWeighted[d], pos + 1));
          ASSERT_LE(std::fabs(got - want[d]), tol)
              << "seq " << s << " token " << j << " (position " << pos << ") head " << h << " d "
              << d;
        }
      }
    }
}

// (cached, new): a fresh prompt over two query tiles, chunks starting
// mid-block, a one-token chunk after a long context, a block-aligned one.
const std::vector<std::pair<int, int>> kPrefillChunks = {
    {0, 70}, {5, 37}, {300, 1}, {17, 16}, {999, 65}};
// Contexts 1, 15, 16, 17, 300 and 1000 (block boundaries; a key tile of the
// tensor-core kernel is 64 positions, so 300 and 1000 end mid-tile).
const std::vector<std::pair<int, int>> kPrefillBoundaryContexts = {
    {0, 1}, {0, 15}, {8, 8}, {1, 16}, {236, 64}, {900, 100}};

TEST(PagedPrefillAttention, MatchesReferenceWithChunksStartingMidBlock) {
  QCUDA_REQUIRE_DEVICE();
  uint32_t seed = 100;
  for (KVDType t : kAllTypes)
    for (int hd : {64, 128}) {
      runPrefill(kPrefillChunks, hd, 32, 8, t, seed++);
      runPrefill(kPrefillBoundaryContexts, hd, 8, 2, t, seed++);
    }
  runPrefill({{3, 33}, {0, 1}}, 128, 32, 1, KVDType::BF16, seed++);
  runPrefill({{16, 7}}, 64, 4, 4, KVDType::FP8E4M3, seed++);
}

/// The same cases through the tensor-core kernel (bf16 / f16 pools), with
/// the P-rounding term added to the tolerance (pRoundingBound).
TEST(PagedPrefillAttention, TensorCoreMatchesReference) {
  QCUDA_REQUIRE_DEVICE();
  uint32_t seed = 300;
  for (KVDType t : {KVDType::BF16, KVDType::F16})
    for (int hd : {64, 128}) {
      runPrefill(kPrefillChunks, hd, 32, 8, t, seed++, PrefillKernel::TensorCore);
      runPrefill(kPrefillBoundaryContexts, hd, 8, 2, t, seed++, PrefillKernel::TensorCore);
      runPrefill({{3, 33}, {0, 1}}, hd, 32, 1, t, seed++, PrefillKernel::TensorCore); // MQA
      runPrefill({{16, 7}, {40, 130}}, hd, 4, 4, t, seed++, PrefillKernel::TensorCore);
    }
}

/// Runs one prefill batch through `kernel`; the output rows (NaN-poisoned
/// before the call).
std::vector<uint16_t> prefillOutput(const PagedSetup &setup, const DevicePool &dev,
                                    const std::vector<int32_t> &queryStart, int maxQuery,
                                    const AttentionHeads &heads, const DeviceBuffer<uint16_t> &dq,
                                    PrefillKernel kernel) {
  DeviceBuffer<uint16_t> dout(
      std::vector<uint16_t>(size_t(queryStart.back()) * heads.outStride, kBf16NaN));
  DeviceBuffer<int32_t> dstart(queryStart);
  std::string err;
  EXPECT_TRUE(prefillAttention(dev.kv(setup), dev.seqs(setup), dstart.get(), maxQuery, heads,
                               dq.get(), dout.get(), nullptr, &err, kernel))
      << err;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return dout.download();
}

/// Long chunks (many key tiles, 16-32 query tiles) where the double
/// reference would be slow: the tensor-core kernel against the FMA one.
/// Each is within its reference bound, so |tc - fma| <= both bounds added:
/// 2 (|x| 2^-8 + 1e-3 + 2e-5 sqrt(n)) + pRoundingBound with
/// sum w |v| <= max |v| = 1, |x| taken from the FMA output (2^-7 |fma|
/// stands in for 2^-8 (|ref| + |ref|) up to terms far below 1e-3). Also:
/// the tensor-core output is the same bits on a second run, and Auto picks
/// it for bf16 / f16 pools (the FMA kernel with QCUDA_PREFILL_FMA set).
TEST(PagedPrefillAttention, TensorCoreAgreesWithFmaOnLongChunks) {
  QCUDA_REQUIRE_DEVICE();
  const bool fmaForced = [] {
    const char *v = std::getenv("QCUDA_PREFILL_FMA");
    return v && *v && std::string(v) != "0";
  }();
  uint32_t seed = 400;
  for (KVDType type : {KVDType::BF16, KVDType::F16})
    for (int hd : {64, 128}) {
      SCOPED_TRACE(std::string("kv ") + kvName(type) + " head_dim " + std::to_string(hd));
      std::mt19937 rng(seed++);
      const std::vector<std::pair<int, int>> chunks = {{0, 1000}, {500, 700}, {33, 2048}};
      std::vector<int32_t> contexts, queryStart{0};
      int maxQuery = 0;
      for (auto [cached, fresh] : chunks) {
        contexts.push_back(cached + fresh);
        queryStart.push_back(queryStart.back() + fresh);
        maxQuery = std::max(maxQuery, fresh);
      }
      const int numHeads = 8, kvHeads = 2;
      PagedSetup setup(contexts, kvHeads, hd, type, rng);
      DevicePool dev(setup);
      AttentionHeads heads;
      heads.numHeads = numHeads;
      heads.qStride = heads.outStride = int64_t(numHeads) * hd;
      const std::vector<float> q = randomRows(size_t(queryStart.back()) * heads.qStride, rng, 3.0f);
      DeviceBuffer<uint16_t> dq(toBf16(q));
      const std::vector<uint16_t> tc =
          prefillOutput(setup, dev, queryStart, maxQuery, heads, dq, PrefillKernel::TensorCore);
      const std::vector<uint16_t> fma =
          prefillOutput(setup, dev, queryStart, maxQuery, heads, dq, PrefillKernel::Fma);
      for (size_t s = 0; s < chunks.size(); ++s)
        for (int j = 0; j < chunks[s].second; ++j) {
          const int n = chunks[s].first + j + 1;
          for (int e = 0; e < numHeads * hd; ++e) {
            const size_t i = size_t(queryStart[s] + j) * heads.outStride + e;
            const double a = qrt::bf16ToF32(tc[i]), b = qrt::bf16ToF32(fma[i]);
            const double bound = std::fabs(b) * 0x1p-7 + 2e-3 + 4e-5 * std::sqrt(double(n)) +
                                 pRoundingBound(type, 1.0, n);
            ASSERT_LE(std::fabs(a - b), bound)
                << "seq " << s << " token " << j << " head " << e / hd << " d " << e % hd;
          }
        }
      EXPECT_EQ(prefillOutput(setup, dev, queryStart, maxQuery, heads, dq,
                              PrefillKernel::TensorCore),
                tc)
          << "a second tensor-core run";
      EXPECT_EQ(prefillOutput(setup, dev, queryStart, maxQuery, heads, dq, PrefillKernel::Auto),
                fmaForced ? fma : tc)
          << "Auto (QCUDA_PREFILL_FMA " << (fmaForced ? "set" : "unset") << ")";
    }
}

/// Runs without a device: the argument checks come before any launch.
TEST(PagedPrefillAttention, TensorCoreRefusesQuantizedPools) {
  PagedKV kv;
  kv.k = kv.v = reinterpret_cast<void *>(16);
  kv.kScale = kv.vScale = reinterpret_cast<float *>(16);
  kv.kvHeads = 8;
  kv.headDim = 128;
  kv.dtype = KVDType::I8;
  PagedSequences seqs;
  seqs.numSeqs = 1;
  seqs.contextLens = seqs.blockTableStart = seqs.blockTable = reinterpret_cast<int32_t *>(16);
  AttentionHeads heads;
  heads.numHeads = 32;
  heads.qStride = heads.outStride = 32 * 128;
  std::string err;
  EXPECT_FALSE(prefillAttention(kv, seqs, seqs.contextLens, 1, heads, kv.k, kv.v, nullptr, &err,
                                PrefillKernel::TensorCore));
  EXPECT_NE(err.find("needs a bf16 or f16 KV pool, not int8"), std::string::npos) << err;
  kv.dtype = KVDType::FP8E4M3;
  EXPECT_FALSE(prefillAttention(kv, seqs, seqs.contextLens, 1, heads, kv.k, kv.v, nullptr, &err,
                                PrefillKernel::TensorCore));
  EXPECT_NE(err.find("not fp8_e4m3"), std::string::npos) << err;
}

/// The reference codec's rounding bound (what the KV-write test allows)
/// holds for every pool type over the scales and ranges the tests use; runs
/// without a device.
TEST(KVCodecRef, RoundTripStaysInsideTheRoundingBound) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> val(-3.0f, 3.0f);
  for (KVDType type : kAllTypes)
    for (float scale : {0.01f, 0.025f, 0.03125f, 1.0f / 127, 1.0f / 400}) {
      SCOPED_TRACE(std::string("kv ") + kvName(type) + " scale " + std::to_string(scale));
      const KVCodecRef codec{type};
      uint8_t bytes[2];
      for (int i = 0; i < 20000; ++i) {
        // Inside the no-saturation range of int8 (127 steps) and fp8 (448).
        const float x = std::max(-120.0f * scale, std::min(120.0f * scale, val(rng)));
        codec.store(bytes, x, scale);
        ASSERT_LE(std::fabs(codec.load(bytes, scale) - x), codec.roundingBound(x, scale))
            << "x " << x;
      }
    }
}

TEST(RotaryKVWrite, RotatesQAndWritesKVThroughTheSlotMapping) {
  QCUDA_REQUIRE_DEVICE();
  uint32_t seed = 200;
  for (KVDType type : kAllTypes)
    for (int hd : {64, 128}) {
      SCOPED_TRACE(std::string("kv ") + kvName(type) + " head_dim " + std::to_string(hd));
      std::mt19937 rng(seed++);
      const int T = 7, nH = 8, nKV = 2, numBlocks = 5;
      const int64_t Q = nH * hd, KV = nKV * hd, stride = Q + 2 * KV;
      const std::vector<float> qkv = randomRows(size_t(T) * stride, rng, 2.0f);
      const std::vector<int32_t> positions = {0, 1, 15, 16, 17, 300, 4095};
      // Slots in scattered blocks, some mid-block.
      const std::vector<int64_t> slots = {3 * 16 + 0, 3 * 16 + 1, 0 * 16 + 15, 4 * 16 + 0,
                                          4 * 16 + 1, 2 * 16 + 12, 1 * 16 + 7};
      std::vector<float> invFreq(hd / 2);
      for (int i = 0; i < hd / 2; ++i)
        invFreq[i] = 1.0f / std::pow(10000.0f, float(2 * i) / float(hd));
      KVCodecRef codec{type};
      std::vector<float> kScale(nKV), vScale(nKV);
      for (int h = 0; h < nKV; ++h) {
        // |rotated k| <= 2 * sqrt(2): inside int8's 127 and fp8's 448 steps.
        kScale[h] = type == KVDType::FP8E4M3 ? 0.01f + 0.003f * h : 0.025f + 0.005f * h;
        vScale[h] = kScale[h] * 1.25f;
      }
      const size_t poolElems = size_t(numBlocks) * 16 * nKV * hd;
      const std::vector<uint8_t> poison(poolElems * codec.bytes(), 0x5a);
      DeviceBuffer<uint8_t> dk(poison), dv(poison);
      DeviceBuffer<float> dks(kScale), dvs(vScale), dinv(invFreq);
      DeviceBuffer<uint16_t> dqkv(toBf16(qkv));
      DeviceBuffer<int32_t> dpos(positions);
      DeviceBuffer<int64_t> dslot(slots);
      PagedKV kv;
      kv.k = dk.get();
      kv.v = dv.get();
      kv.numBlocks = numBlocks;
      kv.kvHeads = nKV;
      kv.headDim = hd;
      kv.dtype = type;
      kv.kScale = dks.get();
      kv.vScale = dvs.get();
      QKVRows rows;
      rows.data = dqkv.get();
      rows.rowStride = stride;
      rows.qOffset = 0;
      rows.kOffset = Q;
      rows.vOffset = Q + KV;
      rows.numTokens = T;
      rows.numHeads = nH;
      std::string err;
      ASSERT_TRUE(writeRotaryKV(kv, rows, dpos.get(), dslot.get(), dinv.get(), nullptr, &err)) << err;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<uint16_t> gotQkv = dqkv.download();
      const std::vector<uint8_t> gotK = dk.download(), gotV = dv.download();

      std::vector<bool> written(poolElems, false);
      for (int t = 0; t < T; ++t) {
        auto rotated = [&](const float *head, int i) {
          const int half = hd / 2;
          const float angle = float(positions[t]) * invFreq[i % half];
          const double c = float(std::cos(double(angle))), s = float(std::sin(double(angle)));
          return i < half ? head[i] * c - head[i + half] * s : head[i] * c + head[i - half] * s;
        };
        for (int h = 0; h < nH; ++h)
          for (int i = 0; i < hd; ++i) {
            const double want = rotated(&qkv[t * stride + h * hd], i);
            const double got = qrt::bf16ToF32(gotQkv[t * stride + h * hd + i]);
            ASSERT_LE(std::fabs(got - want), std::fabs(want) * 0x1p-8 + 1e-5)
                << "q token " << t << " head " << h << " i " << i;
          }
        for (int h = 0; h < nKV; ++h)
          for (int i = 0; i < hd; ++i) {
            const size_t e = size_t(slots[t]) * nKV * hd + size_t(h) * hd + i;
            written[e] = true;
            const double wantK = rotated(&qkv[t * stride + Q + h * hd], i);
            const double wantV = qkv[t * stride + Q + KV + h * hd + i];
            const double gk = codec.load(&gotK[e * codec.bytes()], kScale[h]);
            const double gv = codec.load(&gotV[e * codec.bytes()], vScale[h]);
            ASSERT_LE(std::fabs(gk - wantK), codec.roundingBound(wantK, kScale[h]) + 1e-5)
                << "k token " << t << " head " << h << " i " << i;
            ASSERT_LE(std::fabs(gv - wantV), codec.roundingBound(wantV, vScale[h]) + 1e-6)
                << "v token " << t << " head " << h << " i " << i;
          }
      }
      // The k/v parts of the qkv rows are inputs only; other slots untouched.
      for (int t = 0; t < T; ++t)
        for (int64_t i = Q; i < stride; ++i)
          ASSERT_EQ(gotQkv[t * stride + i], qrt::f32ToBf16(qkv[t * stride + i]));
      for (size_t e = 0; e < poolElems; ++e) {
        if (written[e])
          continue;
        for (size_t b = 0; b < codec.bytes(); ++b) {
          ASSERT_EQ(gotK[e * codec.bytes() + b], 0x5a) << "K element " << e << " was written";
          ASSERT_EQ(gotV[e * codec.bytes() + b], 0x5a) << "V element " << e << " was written";
        }
      }
    }
}

} // namespace
} // namespace qcuda::test
