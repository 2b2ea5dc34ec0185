//===- CudaModelExecutor.cpp - the decoder forward pass on a CUDA GPU ------===//
//
// Host code only: every kernel is a qopt_cuda call (WeightOnlyGemm.h,
// Attention.h, Elementwise.h) or cuBLAS (bf16 weights). The residual stream
// is bf16 on the device (the CPU executor keeps it in fp32), so logits
// differ from the CPU's by bf16 rounding; docs/cuda.md gives the tolerance
// the tests use.
//
//===----------------------------------------------------------------------===//
#include "CudaModelExecutor.h"

#include "DecodeGraphs.h"
#include "W8A8Linear.h"
#include "qopt-cuda/ActQuant.h"
#include "qopt-cuda/Attention.h"
#include "qopt-cuda/Elementwise.h"
#include "qopt-cuda/GenLibrary.h"
#include "qopt-cuda/Sampling.h"
#include "qopt-cuda/WeightOnlyGemm.h"
#include "qopt-rt/artifact/GpuArtifact.h"
#include "qopt-rt/half.h"
#include "qopt-rt/model/CpuModelExecutor.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

namespace qcuda {

using qrt::ArtifactLinear;
using qrt::ArtifactTensor;
using qrt::serving::SampleSpec;
using qrt::serving::StepBatch;

namespace {

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

/// One projection on the device: GPU-packed int4/int8 (weight-only), a
/// W8A8 linear (8-bit activations, cuBLASLt) or a bf16 matrix.
struct DeviceLinear {
  std::string name;
  int64_t N = 0, K = 0;
  bool quantized = false;
  GpuQuantWeights q;         ///< quantized (q.special: the artifact's generated kernel)
  const void *w = nullptr;   ///< bf16 [N, K] (float linears)
  const void *bias = nullptr; ///< bf16 [N] or null (quantized linears only)
  std::shared_ptr<W8A8Linear> w8a8; ///< W8A8 linears
  bool valid() const { return quantized || w || w8a8; }
};

struct DeviceLayer {
  const float *inNorm = nullptr, *postNorm = nullptr;
  DeviceLinear qkv, q, k, v, o, gateUp, gate, up, down; ///< qkv / gateUp when fused
  PagedKV kv;
};

/// Step inputs in one device buffer, uploaded with one copy.
struct StepArrays {
  int64_t *slots = nullptr;
  int32_t *tokenIds = nullptr, *positions = nullptr, *queryStart = nullptr,
          *contextLens = nullptr, *blockTableStart = nullptr, *blockTable = nullptr,
          *logitRows = nullptr;
};

/// Sizes and launch shapes of one forward pass, fixed before anything is
/// enqueued: what a captured graph bakes in. Per-step data lives in the
/// device arrays (StepArrays), never here.
struct ForwardPlan {
  int64_t T = 0;                ///< token rows
  int32_t S = 0;                ///< sequences
  int32_t decodeSeqs = 0;       ///< leading sequences with one new token
  int32_t decodeMaxContext = 0; ///< bound of their contexts (the grid)
  DecodeLaunch decodeLaunch;    ///< zero fields: picked from the batch
  void *decodeWs = nullptr;
  size_t decodeWsBytes = 0;
  int32_t prefillMaxContext = 0, prefillMaxQuery = 0;
  int64_t logitRows = 0; ///< rows through lm_head
};

/// Split-K workspace of the weight-only GEMMs: a GEMM splits only while its
/// tiles (64 x 128) are fewer than the SMs, so splits x M x N stays under
/// 2 x SMs x 8192 floats: 16 MiB covers 256 SMs (weightOnlyGemmSplits
/// takes fewer splits if it ever does not).
constexpr size_t kSplitKWorkspaceBytes = size_t(16) << 20;

/// cuBLAS's workspace, set once so that GEMMs captured into a graph use it
/// (the size NVIDIA recommends for Hopper).
constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;

bool kvTypeFromName(const std::string &name, KVDType *t) {
  if (name.empty() || name == "bf16")
    *t = KVDType::BF16;
  else if (name == "f16")
    *t = KVDType::F16;
  else if (name == "int8")
    *t = KVDType::I8;
  else if (name == "fp8_e4m3" || name == "fp8e4m3")
    *t = KVDType::FP8E4M3;
  else
    return false;
  return true;
}

} // namespace

bool cudaDeviceAvailable(int device, std::string *description, std::string *why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    *why = std::string("no CUDA device: ") +
           (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    return false;
  }
  if (device < 0 || device >= count) {
    *why = "no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " found)";
    return false;
  }
  cudaDeviceProp p;
  if ((e = cudaGetDeviceProperties(&p, device)) != cudaSuccess) {
    *why = std::string("no CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  *description = std::string(p.name) + " (sm" + std::to_string(p.major) +
                 std::to_string(p.minor) + ", " + std::to_string(p.major) + "." +
                 std::to_string(p.minor) + ")";
  return true;
}

struct CudaModelExecutor::Impl {
  CudaExecutorOptions opt;
  std::string device;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  bool syncEachOp = false; ///< QCUDA_SYNC_EACH_OP=1: fault reports name the op

  int64_t H = 0, I = 0, V = 0, L = 0, heads = 0, kvHeads = 0, D = 0, Q = 0, KV = 0;
  float eps = 1e-6f;
  const void *embedding = nullptr;
  EmbeddingType embeddingType = EmbeddingType::BF16;
  const float *finalNorm = nullptr, *invFreq = nullptr;
  DeviceLinear lmHead;
  std::vector<DeviceLayer> layers;
  int32_t numBlocks = 0, blockSize = 16;
  uint64_t weightBytes = 0, kvBytes = 0;

  std::vector<void *> allocations;
  std::map<const ArtifactTensor *, const void *> bf16Matrices; ///< shared (tied lm_head)

  // Scratch, bf16 rows unless said: capacity in tokens / logit rows.
  int64_t capTokens = 0, capLogitRows = 0;
  void *x = nullptr, *h = nullptr, *qkv = nullptr, *attn = nullptr, *tmp = nullptr,
       *gateUp = nullptr, *act = nullptr, *gathered = nullptr;
  float *logits = nullptr;
  void *stepBuf = nullptr;
  size_t stepCap = 0;
  void *decodeWs = nullptr;
  size_t decodeWsCap = 0;
  std::vector<uint8_t> staging;

  // Pure decode steps, padded to a bucket (DecodeGraphs.h): the arrays at
  // fixed offsets of one buffer, a decode workspace and launch shape fixed
  // per bucket, and the bucket's graph once captured.
  DecodeGraphLimits padding;
  DecodeStepLayout padLayout;
  void *padBuf = nullptr;
  StepArrays padArrays;
  std::vector<uint8_t> padStaging;
  void *padDecodeWs = nullptr;
  size_t padDecodeWsBytes = 0;
  int32_t padMaxContext = 0;
  struct Bucket {
    DecodeLaunch launch;
    cudaGraphExec_t graph = nullptr;
    bool captureFailed = false;
  };
  std::map<int32_t, Bucket> buckets;
  bool graphsEnabled = false;
  bool graphWarningShown = false;
  void *blasWs = nullptr;
  // Split-K partial sums of the weight-only GEMMs: fixed (graph-safe) and
  // small, since a GEMM splits only when its tiles are fewer than the SMs.
  void *splitKWs = nullptr;
  // The artifact's generated GEMM kernels (kernels/sm_XX.so), if any.
  std::unique_ptr<GenLibrary> genLibrary;
  std::string genArch;
  bool genDisabled = false;
  int genAttached = 0, packedLinears = 0;
  // W8A8: 8-bit codes and per-row scales of the next W8A8 linear's input
  // (written by its producer), the int32 product, and the cuBLASLt GEMM.
  bool anyW8A8 = false;
  void *xq = nullptr, *w8a8Ws = nullptr;
  float *xScales = nullptr;
  int64_t maxW8A8N = 0;
  std::unique_ptr<W8A8Gemm> w8a8Gemm;
  // Device sampling: per-row parameters and the drawn ids (grown on demand;
  // outside any graph).
  void *sampleBuf = nullptr;
  size_t sampleCap = 0;
  std::vector<uint8_t> sampleStaging;

  ~Impl() {
    if (stream)
      cudaStreamSynchronize(stream);
    dropGraphs();
    for (void *p : allocations)
      cudaFree(p);
    if (blas)
      cublasDestroy(blas);
    if (stream)
      cudaStreamDestroy(stream);
  }

  bool alloc(size_t bytes, void **p, const std::string &what, std::string *error) {
    cudaError_t e = cudaMalloc(p, std::max<size_t>(bytes, 256));
    if (e != cudaSuccess) {
      cudaGetLastError(); // clear the sticky-free allocation error
      size_t freeB = 0, total = 0;
      cudaMemGetInfo(&freeB, &total);
      *error = "out of GPU memory allocating " + what + " (" + mib(bytes) + "; " + mib(freeB) +
               " free of " + mib(total) + "): " + cudaGetErrorString(e);
      *p = nullptr;
      return false;
    }
    allocations.push_back(*p);
    return true;
  }
  void release(void *p) {
    if (!p)
      return;
    allocations.erase(std::remove(allocations.begin(), allocations.end(), p), allocations.end());
    cudaFree(p);
  }
  bool upload(const void *host, size_t bytes, void **dev, const std::string &what,
              std::string *error) {
    if (!alloc(bytes, dev, what, error))
      return false;
    cudaError_t e = cudaMemcpy(*dev, host, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
      *error = "copying " + what + " to the GPU: " + cudaGetErrorString(e);
      return false;
    }
    weightBytes += bytes;
    return true;
  }

  // --- weights -------------------------------------------------------------

  /// A float vector (norm weight) as fp32 on the device.
  bool uploadF32(const ArtifactTensor *t, const float **out, std::string *error) {
    std::vector<float> v(size_t(t->nbytes / (t->dtype == "bf16" ? 2 : 4)));
    if (t->dtype == "bf16") {
      const uint16_t *src = reinterpret_cast<const uint16_t *>(t->data);
      for (size_t i = 0; i < v.size(); ++i)
        v[i] = qrt::bf16ToF32(src[i]);
    } else {
      std::memcpy(v.data(), t->data, t->nbytes);
    }
    void *d = nullptr;
    if (!upload(v.data(), v.size() * 4, &d, "tensor '" + t->name + "'", error))
      return false;
    *out = static_cast<const float *>(d);
    return true;
  }
  /// A float matrix as bf16 on the device (f32 rounded to nearest even).
  bool uploadBf16(const ArtifactTensor *t, const void **out, std::string *error) {
    if (auto it = bf16Matrices.find(t); it != bf16Matrices.end()) {
      *out = it->second;
      return true;
    }
    void *d = nullptr;
    if (t->dtype == "bf16") {
      if (!upload(t->data, t->nbytes, &d, "tensor '" + t->name + "'", error))
        return false;
    } else {
      const size_t n = t->nbytes / 4;
      std::vector<uint16_t> b(n);
      const float *src = reinterpret_cast<const float *>(t->data);
      for (size_t i = 0; i < n; ++i)
        b[i] = qrt::f32ToBf16(src[i]);
      if (!upload(b.data(), n * 2, &d, "tensor '" + t->name + "'", error))
        return false;
    }
    bf16Matrices[t] = d;
    *out = d;
    return true;
  }
  bool uploadLinear(const ArtifactLinear &l, DeviceLinear *out, std::string *error) {
    out->name = l.name;
    out->N = l.outFeatures;
    out->K = l.inFeatures;
    if (W8A8Linear::isW8A8(l)) {
      out->w8a8 = std::make_shared<W8A8Linear>();
      if (!out->w8a8->upload(l, error))
        return false;
      anyW8A8 = true;
      maxW8A8N = std::max(maxW8A8N, l.outFeatures);
      weightBytes += l.packed ? l.packed->nbytes : 0;
      return true;
    }
    if (l.format == "f32" || l.format == "bf16") {
      if (l.bias) {
        *error = "linear '" + l.name + "': a bias on a float linear is not supported by the "
                 "CUDA executor yet";
        return false;
      }
      return uploadBf16(l.packed, &out->w, error);
    }
    GpuQuantFormat f;
    qrt::GpuBlobLayout bl;
    if (!qrt::parseGpuLayoutId(l.layout, &f, error) ||
        !qrt::gpuBlobLayout(f, l.outFeatures, l.inFeatures, &bl, error)) {
      *error = "linear '" + l.name + "': " + *error;
      return false;
    }
    void *d = nullptr;
    if (!upload(l.packed->data, l.packed->nbytes, &d, "linear '" + l.name + "'", error))
      return false;
    const uint8_t *base = static_cast<const uint8_t *>(d);
    out->quantized = true;
    out->q.format = f;
    out->q.geometry = bl.geometry;
    out->q.codes = reinterpret_cast<const uint32_t *>(base + bl.codesOffset);
    out->q.scales = reinterpret_cast<const uint16_t *>(base + bl.scalesOffset);
    out->q.zeros =
        f.symmetric ? nullptr : reinterpret_cast<const uint16_t *>(base + bl.zerosOffset);
    if (l.bias) {
      std::vector<uint16_t> b(size_t(l.outFeatures));
      for (size_t i = 0; i < b.size(); ++i)
        b[i] = qrt::f32ToBf16(l.bias->dtype == "bf16"
                                  ? qrt::bf16ToF32(reinterpret_cast<const uint16_t *>(
                                        l.bias->data)[i])
                                  : reinterpret_cast<const float *>(l.bias->data)[i]);
      void *db = nullptr;
      if (!upload(b.data(), b.size() * 2, &db, "bias of '" + l.name + "'", error))
        return false;
      out->bias = db;
    }
    return true;
  }

  bool loadWeights(const qrt::Artifact &a, std::string *error) {
    const qrt::ArtifactConfig &c = a.config();
    H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, L = c.numLayers;
    heads = c.numHeads, kvHeads = c.numKvHeads, D = c.headDim;
    Q = heads * D, KV = kvHeads * D;
    eps = float(c.rmsNormEps);
    if (D != 64 && D != 128) {
      *error = "head_dim " + std::to_string(D) + ": the CUDA attention kernels take 64 or 128";
      return false;
    }
    if (H % 8 != 0 || I % 8 != 0) {
      *error = "hidden_size and intermediate_size must be multiples of 8 for the CUDA row kernels";
      return false;
    }
    const ArtifactTensor &emb = a.embedding();
    if (emb.dtype == "f32") {
      void *d = nullptr;
      if (!upload(emb.data, emb.nbytes, &d, "the embedding", error))
        return false;
      embedding = d;
      embeddingType = EmbeddingType::F32;
    } else if (!uploadBf16(&emb, &embedding, error)) {
      return false;
    }
    if (!uploadF32(&a.finalNorm(), &finalNorm, error) || !uploadLinear(a.lmHead(), &lmHead, error))
      return false;
    qrt::model::RopeScaling rs;
    rs.type = c.ropeType;
    rs.factor = c.ropeFactor;
    rs.lowFreqFactor = c.ropeLowFreqFactor;
    rs.highFreqFactor = c.ropeHighFreqFactor;
    rs.originalMaxPositionEmbeddings = double(c.ropeOriginalMaxPositionEmbeddings);
    std::vector<float> inv = qrt::model::ropeInvFreq(int32_t(D), c.ropeTheta, rs);
    void *d = nullptr;
    if (!upload(inv.data(), inv.size() * 4, &d, "rotary frequencies", error))
      return false;
    invFreq = static_cast<const float *>(d);
    for (const qrt::ArtifactLayer &al : a.layers()) {
      DeviceLayer dl;
      if (!uploadF32(al.inputNorm, &dl.inNorm, error) ||
          !uploadF32(al.postAttentionNorm, &dl.postNorm, error))
        return false;
      bool ok = al.fusedQkv() ? uploadLinear(al.qkv, &dl.qkv, error)
                              : uploadLinear(al.q, &dl.q, error) &&
                                    uploadLinear(al.k, &dl.k, error) &&
                                    uploadLinear(al.v, &dl.v, error);
      ok = ok && uploadLinear(al.o, &dl.o, error);
      ok = ok && (al.fusedGateUp() ? uploadLinear(al.gateUp, &dl.gateUp, error)
                                   : uploadLinear(al.gate, &dl.gate, error) &&
                                         uploadLinear(al.up, &dl.up, error));
      ok = ok && uploadLinear(al.down, &dl.down, error);
      if (!ok)
        return false;
      if (!kvTypeFromName(al.kvCacheDtype, &dl.kv.dtype)) {
        *error = "KV cache type '" + al.kvCacheDtype + "' is not one the CUDA pool holds";
        return false;
      }
      if (dl.kv.dtype == KVDType::I8 || dl.kv.dtype == KVDType::FP8E4M3) {
        void *ks = nullptr, *vs = nullptr;
        if (!upload(al.kScales.data(), al.kScales.size() * 4, &ks, "KV scales", error) ||
            !upload(al.vScales.data(), al.vScales.size() * 4, &vs, "KV scales", error))
          return false;
        dl.kv.kScale = static_cast<const float *>(ks);
        dl.kv.vScale = static_cast<const float *>(vs);
      }
      dl.kv.blockSize = blockSize;
      dl.kv.kvHeads = int32_t(kvHeads);
      dl.kv.headDim = int32_t(D);
      layers.push_back(dl);
    }
    return true;
  }

  /// Every linear of the model, for passes over all of them.
  std::vector<DeviceLinear *> allLinears() {
    std::vector<DeviceLinear *> out = {&lmHead};
    for (DeviceLayer &l : layers)
      for (DeviceLinear *d : {&l.qkv, &l.q, &l.k, &l.v, &l.o, &l.gateUp, &l.gate, &l.up, &l.down})
        if (d->valid())
          out.push_back(d);
    return out;
  }

  /// Opens the artifact's generated kernels for this GPU's architecture
  /// (manifest kernels.libraries, docs/codegen.md) and points every packed
  /// linear of a generated shape at its kernel. A library that does not
  /// load, or is for another architecture or ABI, is an error naming it;
  /// none in the artifact (or QRT_NO_CODEGEN=1): the generic kernels.
  bool attachGeneratedKernels(const qrt::Artifact &a, int major, int minor, std::string *error) {
    genArch = "sm_" + std::to_string(major) + std::to_string(minor) + (major == 9 ? "a" : "");
    const char *off = std::getenv("QRT_NO_CODEGEN");
    genDisabled = off && *off && std::string(off) != "0";
    for (DeviceLinear *d : allLinears())
      packedLinears += d->quantized;
    auto it = a.kernelLibraries().find(genArch);
    if (genDisabled || it == a.kernelLibraries().end())
      return true;
    genLibrary = GenLibrary::open(it->second, major * 10 + minor, error);
    if (!genLibrary)
      return false;
    for (DeviceLinear *d : allLinears())
      if (d->quantized && (d->q.special = genLibrary->find(d->q.format, d->q.geometry,
                                                           DType::kBF16)))
        ++genAttached;
    return true;
  }

  /// W8A8 linears take 8-bit inputs their producer writes once: the parts
  /// of an unfused projection must agree on how (and all be W8A8 or none),
  /// and logits stay fp32 (a float or weight-only lm_head).
  bool checkW8A8Layout(std::string *error) {
    if (lmHead.w8a8) {
      *error = "lm_head '" + lmHead.name + "' quantizes its activations (W8A8); the CUDA "
               "executor needs fp32 logits from a float or weight-only lm_head";
      return false;
    }
    for (const DeviceLayer &l : layers)
      for (const std::vector<const DeviceLinear *> &parts :
           {std::vector<const DeviceLinear *>{&l.q, &l.k, &l.v},
            std::vector<const DeviceLinear *>{&l.gate, &l.up}}) {
        if (!parts[0]->valid())
          continue; // fused
        for (const DeviceLinear *p : parts) {
          const bool same =
              bool(p->w8a8) == bool(parts[0]->w8a8) &&
              (!p->w8a8 || (p->w8a8->inputSpec(nullptr, nullptr).type ==
                                parts[0]->w8a8->inputSpec(nullptr, nullptr).type &&
                            p->w8a8->inputSpec(nullptr, nullptr).mode ==
                                parts[0]->w8a8->inputSpec(nullptr, nullptr).mode &&
                            p->w8a8->inputSpec(nullptr, nullptr).staticScale ==
                                parts[0]->w8a8->inputSpec(nullptr, nullptr).staticScale));
          if (!same) {
            *error = "linears '" + parts[0]->name + "' and '" + p->name + "' read the same input "
                     "but quantize it differently; the CUDA executor needs them to agree";
            return false;
          }
        }
      }
    return true;
  }

  // --- scratch and the KV pool -----------------------------------------------

  bool ensureTokens(int64_t T, std::string *error) {
    if (T <= capTokens)
      return true;
    dropGraphs(); // they hold the old buffers' addresses
    for (void *p : {x, h, qkv, attn, tmp, gateUp, act, gathered, xq, w8a8Ws,
                    static_cast<void *>(xScales)})
      release(p);
    // All cleared: after a failed allocation below, a later call must
    // neither run on nor free again what was freed here.
    x = h = qkv = attn = tmp = gateUp = act = gathered = xq = w8a8Ws = nullptr;
    xScales = nullptr;
    const int64_t n = std::max<int64_t>(T, capTokens * 2);
    capTokens = 0;
    auto a = [&](void **p, int64_t cols, const char *what) {
      return alloc(size_t(n * cols * 2), p, std::string("activations (") + what + ")", error);
    };
    if (!a(&x, H, "residual") || !a(&h, H, "normed") || !a(&qkv, Q + 2 * KV, "qkv") ||
        !a(&attn, Q, "attention") || !a(&tmp, H, "projection") || !a(&gateUp, 2 * I, "gate_up") ||
        !a(&act, I, "swiglu") || !a(&gathered, H, "sampled rows"))
      return false;
    if (anyW8A8) {
      void *sc = nullptr;
      if (!alloc(size_t(n * std::max({H, I, Q})), &xq, "W8A8 activations", error) ||
          !alloc(size_t(n) * 4, &sc, "W8A8 activation scales", error) ||
          !alloc(size_t(n * maxW8A8N) * 4, &w8a8Ws, "the W8A8 GEMM workspace", error))
        return false;
      xScales = static_cast<float *>(sc);
    }
    capTokens = n;
    return true;
  }
  bool ensureLogitRows(int64_t R, std::string *error) {
    if (R <= capLogitRows)
      return true;
    dropGraphs();
    release(logits);
    const int64_t n = std::max<int64_t>(R, capLogitRows * 2);
    // Nothing dangling if the allocation below fails.
    logits = nullptr;
    capLogitRows = 0;
    void *p = nullptr;
    if (!alloc(size_t(n * V * 4), &p, "logits", error))
      return false;
    logits = static_cast<float *>(p);
    capLogitRows = n;
    return true;
  }
  bool ensure(size_t bytes, void **p, size_t *cap, const char *what, std::string *error) {
    if (bytes <= *cap)
      return true;
    const size_t n = std::max(bytes, *cap * 2);
    release(*p);
    *p = nullptr;
    *cap = 0;
    if (!alloc(n, p, what, error))
      return false;
    *cap = n;
    return true;
  }

  bool allocateKV(std::string *error) {
    uint64_t perBlock = 0;
    for (const DeviceLayer &l : layers)
      perBlock += 2ull * uint64_t(blockSize) * uint64_t(kvHeads * D) * kvElementBytes(l.kv.dtype);
    size_t freeB = 0, total = 0;
    cudaError_t e = cudaMemGetInfo(&freeB, &total);
    if (e != cudaSuccess) {
      *error = std::string("cudaMemGetInfo: ") + cudaGetErrorString(e);
      return false;
    }
    // Keep room for what grows per step (decode workspace, cuBLAS).
    const uint64_t reserve = 256ull << 20;
    const double share = uint64_t(freeB) > reserve ? double(freeB - reserve) : 0.0;
    // One block more than the engine gets: the padding rows' (DecodeGraphs.h).
    int64_t blocks = int64_t(share * opt.gpuMemoryUtilization / double(perBlock)) - 1;
    if (opt.maxBlocks > 0)
      blocks = std::min(blocks, opt.maxBlocks);
    blocks = std::min<int64_t>(blocks, (int64_t(1) << 30) - 1);
    if (blocks < 1) {
      *error = "out of GPU memory for the KV cache: " + mib(freeB) + " free of " + mib(total) +
               " after the weights (" + mib(weightBytes) + "), a block needs " +
               std::to_string(perBlock) + " bytes";
      return false;
    }
    numBlocks = int32_t(blocks);
    padding.padBlock = numBlocks;
    for (size_t i = 0; i < layers.size(); ++i) {
      PagedKV &kv = layers[i].kv;
      const size_t bytes = size_t(numBlocks + 1) * size_t(blockSize) * size_t(kvHeads * D) *
                           kvElementBytes(kv.dtype);
      const std::string what = "the KV pool of layer " + std::to_string(i);
      if (!alloc(bytes, &kv.k, what, error) || !alloc(bytes, &kv.v, what, error))
        return false;
      kv.numBlocks = numBlocks + 1;
      kvBytes += 2 * bytes;
    }
    return true;
  }

  /// The fixed buffers of padded decode steps, before the KV pool takes
  /// the free memory: the step arrays for the largest bucket and, per
  /// bucket, the decode attention launch for contexts up to max_model_len
  /// and its workspace (the largest of them, shared: steps run one at a
  /// time). Nothing when max_model_len is unknown.
  bool allocatePadding(std::string *error) {
    if (opt.maxModelLen <= 0 || layers.empty())
      return true;
    padding.buckets = decodeBuckets(opt.maxNumSeqs);
    padding.blockSize = blockSize;
    padding.maxBlocksPerSeq = (opt.maxModelLen + blockSize - 1) / blockSize;
    padMaxContext = padding.maxBlocksPerSeq * blockSize;
    const int32_t maxBucket = padding.buckets.back();
    padLayout = decodeStepLayout(maxBucket, padding.maxBlocksPerSeq);
    if (!ensureTokens(maxBucket, error) || !ensureLogitRows(maxBucket, error) ||
        !alloc(padLayout.totalBytes, &padBuf, "decode step arrays", error))
      return false;
    uint8_t *base = static_cast<uint8_t *>(padBuf);
    padArrays.slots = reinterpret_cast<int64_t *>(base + padLayout.slots);
    padArrays.tokenIds = reinterpret_cast<int32_t *>(base + padLayout.tokenIds);
    padArrays.positions = reinterpret_cast<int32_t *>(base + padLayout.positions);
    padArrays.queryStart = reinterpret_cast<int32_t *>(base + padLayout.queryStart);
    padArrays.contextLens = reinterpret_cast<int32_t *>(base + padLayout.contextLens);
    padArrays.blockTableStart = reinterpret_cast<int32_t *>(base + padLayout.blockTableStart);
    padArrays.logitRows = reinterpret_cast<int32_t *>(base + padLayout.logitRows);
    padArrays.blockTable = reinterpret_cast<int32_t *>(base + padLayout.blockTable);
    for (int32_t B : padding.buckets) {
      Bucket &bk = buckets[B];
      PagedSequences s;
      s.numSeqs = B;
      s.maxContextLen = padMaxContext;
      const AttentionHeads ah = attentionHeads();
      bk.launch = decodeAttentionFixedLaunch(layers[0].kv, s, ah);
      padDecodeWsBytes = std::max(padDecodeWsBytes,
                                  decodeAttentionWorkspaceBytes(layers[0].kv, s, ah, bk.launch));
    }
    return alloc(padDecodeWsBytes, &padDecodeWs, "decode attention workspace (graphs)", error);
  }

  void dropGraphs() {
    for (auto &[b, bk] : buckets)
      if (bk.graph) {
        cudaGraphExecDestroy(bk.graph);
        bk.graph = nullptr;
      }
  }

  // --- the forward pass --------------------------------------------------------

  /// RMSNorm of x (+ the pending residual) as the input of `consumer`: bf16
  /// rows in h, or a W8A8 consumer's 8-bit codes and scales (fused).
  bool normFor(const DeviceLinear &consumer, const void *pending, const float *weight, int64_t T,
               const std::string &what, std::string *error) {
    if (consumer.w8a8)
      return check(rmsNormQuant(x, pending, weight, T, H, eps,
                                consumer.w8a8->inputSpec(xq, xScales), stream, error),
                   what, error);
    return check(rmsNorm(x, pending, weight, T, H, eps, h, stream, error), what, error);
  }

  /// Reports a failed enqueue, or (QCUDA_SYNC_EACH_OP=1) a fault in `what`.
  bool check(bool ok, const std::string &what, std::string *error) {
    if (!ok) {
      *error = what + ": " + *error;
      return false;
    }
    cudaError_t e = syncEachOp ? cudaStreamSynchronize(stream) : cudaGetLastError();
    if (e != cudaSuccess) {
      *error = what + ": " + cudaGetErrorString(e);
      return false;
    }
    return true;
  }

  /// y = linear(x). A W8A8 linear reads the 8-bit input in xq / xScales:
  /// written by its producer when `inputPrepared` (normFor, the SwiGLU),
  /// else quantized here from the bf16 `in`.
  bool linear(const DeviceLinear &l, const void *in, int64_t M, void *out, DType yType,
              std::string *error, bool inputPrepared = false) {
    if (l.w8a8) {
      if (yType != DType::kBF16) {
        *error = "GEMM '" + l.name + "': W8A8 linears write bf16";
        return false;
      }
      if (!inputPrepared &&
          !check(quantizeRows(in, M, l.K, l.w8a8->inputSpec(xq, xScales), stream, error),
                 "quantizing the input of '" + l.name + "'", error))
        return false;
      return check(l.w8a8->run(*w8a8Gemm, xq, xScales, M, out, w8a8Ws, stream, error),
                   "GEMM '" + l.name + "'", error);
    }
    if (l.quantized) {
      WeightOnlyGemmArgs a;
      a.x = in;
      a.xType = DType::kBF16;
      a.w = l.q;
      a.bias = l.bias;
      a.y = out;
      a.yType = yType;
      a.M = M;
      a.workspace = splitKWs;
      a.workspaceBytes = kSplitKWorkspaceBytes;
      return check(weightOnlyGemm(a, stream, error), "GEMM '" + l.name + "'", error);
    }
    const float alpha = 1.f, beta = 0.f;
    // Row-major y[M, N] = x[M, K] W[N, K]^T is column-major y^T = W^T^T x^T.
    cublasStatus_t st = cublasGemmEx(
        blas, CUBLAS_OP_T, CUBLAS_OP_N, int(l.N), int(M), int(l.K), &alpha, l.w, CUDA_R_16BF,
        int(l.K), in, CUDA_R_16BF, int(l.K), &beta, out,
        yType == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF, int(l.N), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) {
      *error = "GEMM '" + l.name + "': cublasGemmEx failed (status " + std::to_string(int(st)) +
               ")";
      return false;
    }
    return check(true, "GEMM '" + l.name + "'", error);
  }

  /// Unfused projections write their parts side by side into one row,
  /// each through `scratch` (free at that point, [M, largest part]).
  bool linearParts(const std::vector<const DeviceLinear *> &parts, const void *in, int64_t M,
                   void *out, int64_t rowElems, void *scratch, std::string *error,
                   bool inputPrepared = false) {
    int64_t col = 0;
    for (const DeviceLinear *p : parts) {
      if (!linear(*p, in, M, scratch, DType::kBF16, error, inputPrepared))
        return false;
      cudaError_t e = cudaMemcpy2DAsync(static_cast<uint16_t *>(out) + col, size_t(rowElems) * 2,
                                        scratch, size_t(p->N) * 2, size_t(p->N) * 2, size_t(M),
                                        cudaMemcpyDeviceToDevice, stream);
      if (e != cudaSuccess) {
        *error = "copying the output of '" + p->name + "': " + cudaGetErrorString(e);
        return false;
      }
      col += p->N;
    }
    return true;
  }

  std::string validate(const StepBatch &b) const {
    const int64_t T = b.numTokens(), S = b.numSeqs();
    if (b.blockSize != blockSize)
      return "block size " + std::to_string(b.blockSize) + ", the GPU pool uses " +
             std::to_string(blockSize);
    if (int64_t(b.positions.size()) != T || int64_t(b.slotMapping.size()) != T)
      return "positions / slot mapping do not have one entry per token";
    if (int64_t(b.queryStart.size()) != S + 1 || int64_t(b.contextLens.size()) != S ||
        int64_t(b.blockTableStart.size()) != S + 1 || b.queryStart[0] != 0 ||
        b.queryStart[size_t(S)] != T || b.blockTableStart[size_t(S)] != int64_t(b.blockTable.size()))
      return "per-sequence arrays are inconsistent with the token count";
    for (int64_t i = 0; i < S; ++i) {
      const int32_t n = b.queryStart[size_t(i + 1)] - b.queryStart[size_t(i)];
      const int32_t ctx = b.contextLens[size_t(i)];
      const int32_t nb = b.blockTableStart[size_t(i + 1)] - b.blockTableStart[size_t(i)];
      if (n < 1 || ctx < n || int64_t(nb) * blockSize < ctx)
        return "sequence " + std::to_string(i) + ": " + std::to_string(n) + " new tokens, context " +
               std::to_string(ctx) + ", " + std::to_string(nb) + " blocks do not fit";
    }
    for (int32_t blk : b.blockTable)
      if (blk < 0 || blk >= numBlocks)
        return "block " + std::to_string(blk) + " outside the pool (" + std::to_string(numBlocks) +
               " blocks)";
    for (int64_t t = 0; t < T; ++t) {
      if (b.tokenIds[size_t(t)] < 0 || b.tokenIds[size_t(t)] >= V)
        return "token id " + std::to_string(b.tokenIds[size_t(t)]) + " outside the vocabulary (" +
               std::to_string(V) + ")";
      if (b.slotMapping[size_t(t)] < 0 ||
          b.slotMapping[size_t(t)] >= int64_t(numBlocks) * blockSize)
        return "slot " + std::to_string(b.slotMapping[size_t(t)]) + " outside the pool";
    }
    for (size_t k = 0; k < b.sampleIndices.size(); ++k)
      if (b.sampleIndices[k] < 0 || b.sampleIndices[k] >= S ||
          (k && b.sampleIndices[k] <= b.sampleIndices[k - 1]))
        return "sample indices are not increasing sequence indices";
    return "";
  }

  /// Packs the step arrays into `staging` and copies them up in one go.
  bool uploadStep(const StepBatch &b, const std::vector<int32_t> &rows, StepArrays *d,
                  std::string *error) {
    struct Part {
      const void *src;
      size_t bytes;
      void **dst;
    };
    std::vector<Part> parts = {
        {b.slotMapping.data(), b.slotMapping.size() * 8, reinterpret_cast<void **>(&d->slots)},
        {b.tokenIds.data(), b.tokenIds.size() * 4, reinterpret_cast<void **>(&d->tokenIds)},
        {b.positions.data(), b.positions.size() * 4, reinterpret_cast<void **>(&d->positions)},
        {b.queryStart.data(), b.queryStart.size() * 4, reinterpret_cast<void **>(&d->queryStart)},
        {b.contextLens.data(), b.contextLens.size() * 4,
         reinterpret_cast<void **>(&d->contextLens)},
        {b.blockTableStart.data(), b.blockTableStart.size() * 4,
         reinterpret_cast<void **>(&d->blockTableStart)},
        {b.blockTable.data(), b.blockTable.size() * 4, reinterpret_cast<void **>(&d->blockTable)},
        {rows.data(), rows.size() * 4, reinterpret_cast<void **>(&d->logitRows)},
    };
    size_t total = 0;
    std::vector<size_t> offsets;
    for (const Part &p : parts) {
      offsets.push_back(total);
      total += (p.bytes + 255) / 256 * 256;
    }
    if (!ensure(total, &stepBuf, &stepCap, "step arrays", error))
      return false;
    staging.assign(total, 0);
    for (size_t i = 0; i < parts.size(); ++i) {
      if (parts[i].bytes)
        std::memcpy(staging.data() + offsets[i], parts[i].src, parts[i].bytes);
      *parts[i].dst = static_cast<uint8_t *>(stepBuf) + offsets[i];
    }
    cudaError_t e =
        cudaMemcpyAsync(stepBuf, staging.data(), total, cudaMemcpyHostToDevice, stream);
    if (e != cudaSuccess) {
      *error = std::string("uploading the step arrays: ") + cudaGetErrorString(e);
      return false;
    }
    return true;
  }

  AttentionHeads attentionHeads() const {
    AttentionHeads ah;
    ah.numHeads = int32_t(heads);
    ah.qStride = Q + 2 * KV;
    ah.outStride = Q;
    return ah;
  }

  bool attention(const DeviceLayer &l, const ForwardPlan &plan, const StepArrays &d,
                 size_t layer, std::string *error) {
    const AttentionHeads ah = attentionHeads();
    const std::string where = "layer " + std::to_string(layer) + " attention";
    if (plan.decodeSeqs > 0) {
      PagedSequences s;
      s.numSeqs = plan.decodeSeqs;
      s.contextLens = d.contextLens;
      s.blockTableStart = d.blockTableStart;
      s.blockTable = d.blockTable;
      s.maxContextLen = plan.decodeMaxContext;
      if (!check(decodeAttention(l.kv, s, ah, qkv, attn, plan.decodeWs, plan.decodeWsBytes, stream,
                                 error, plan.decodeLaunch),
                 where + " (decode)", error))
        return false;
    }
    if (plan.decodeSeqs < plan.S) {
      const int32_t lead = plan.decodeSeqs;
      PagedSequences s;
      s.numSeqs = plan.S - lead;
      s.contextLens = d.contextLens + lead;
      s.blockTableStart = d.blockTableStart + lead;
      s.blockTable = d.blockTable;
      s.maxContextLen = plan.prefillMaxContext;
      if (!check(prefillAttention(l.kv, s, d.queryStart + lead, plan.prefillMaxQuery, ah, qkv,
                                  attn, stream, error),
                 where + " (prefill)", error))
        return false;
    }
    return true;
  }

  /// The plan of a step that runs as it comes (no padding): sequences with
  /// one new token at the front of the batch (the scheduler puts running
  /// decodes first) take the decode kernel; the rest, chunked prefills, the
  /// prefill kernel (correct for any chunk).
  bool eagerPlan(const StepBatch &b, int64_t logitRows, ForwardPlan *plan, std::string *error) {
    const int32_t S = b.numSeqs();
    plan->T = b.numTokens();
    plan->S = S;
    int32_t lead = 0;
    while (lead < S && b.queryStart[size_t(lead + 1)] - b.queryStart[size_t(lead)] == 1)
      ++lead;
    plan->decodeSeqs = lead;
    if (lead > 0) {
      plan->decodeMaxContext =
          *std::max_element(b.contextLens.begin(), b.contextLens.begin() + lead);
      PagedSequences s;
      s.numSeqs = lead;
      s.maxContextLen = plan->decodeMaxContext;
      const size_t ws =
          std::max<size_t>(decodeAttentionWorkspaceBytes(layers[0].kv, s, attentionHeads()), 256);
      if (!ensure(ws, &decodeWs, &decodeWsCap, "decode attention workspace", error))
        return false;
      plan->decodeWs = decodeWs;
      plan->decodeWsBytes = decodeWsCap;
    }
    if (lead < S) {
      plan->prefillMaxContext = *std::max_element(b.contextLens.begin() + lead, b.contextLens.end());
      for (int32_t i = lead; i < S; ++i)
        plan->prefillMaxQuery =
            std::max(plan->prefillMaxQuery, b.queryStart[size_t(i + 1)] - b.queryStart[size_t(i)]);
    }
    plan->logitRows = logitRows;
    return true;
  }

  /// The plan of a padded decode step of bucket B: every shape fixed by B
  /// and max_model_len, so the same plan serves every step of the bucket.
  ForwardPlan bucketPlan(int32_t B) const {
    ForwardPlan plan;
    plan.T = B;
    plan.S = B;
    plan.decodeSeqs = B;
    plan.decodeMaxContext = padMaxContext;
    plan.decodeLaunch = buckets.at(B).launch;
    plan.decodeWs = padDecodeWs;
    plan.decodeWsBytes = padDecodeWsBytes;
    plan.logitRows = B;
    return plan;
  }

  /// Every kernel of the forward pass, from the embedding to the logits in
  /// `logits`, on `stream`. Reads nothing of the host step and never syncs
  /// (unless QCUDA_SYNC_EACH_OP, which disables graphs), so it can be
  /// captured into a graph.
  bool enqueueForward(const ForwardPlan &plan, const StepArrays &d, std::string *error) {
    const int64_t T = plan.T;
    if (!check(embeddingGather(embedding, embeddingType, V, H, d.tokenIds, T, x, stream, error),
               "embedding", error))
      return false;
    // The residual stream is x; each block's output lands in tmp and is
    // added to x by the next RMSNorm (fused).
    const void *pending = nullptr;
    for (size_t li = 0; li < layers.size(); ++li) {
      const DeviceLayer &l = layers[li];
      const std::string where = "layer " + std::to_string(li);
      if (!normFor(l.qkv.valid() ? l.qkv : l.q, pending, l.inNorm, T, where + " input norm",
                   error))
        return false;
      if (!(l.qkv.valid()
                ? linear(l.qkv, h, T, qkv, DType::kBF16, error, /*inputPrepared=*/true)
                : linearParts({&l.q, &l.k, &l.v}, h, T, qkv, Q + 2 * KV, attn, error, true)))
        return false;
      QKVRows rowsQkv;
      rowsQkv.data = qkv;
      rowsQkv.rowStride = Q + 2 * KV;
      rowsQkv.qOffset = 0;
      rowsQkv.kOffset = Q;
      rowsQkv.vOffset = Q + KV;
      rowsQkv.numTokens = int32_t(T);
      rowsQkv.numHeads = int32_t(heads);
      if (!check(writeRotaryKV(l.kv, rowsQkv, d.positions, d.slots, invFreq, stream, error),
                 where + " rotary + KV write", error) ||
          !attention(l, plan, d, li, error) || !linear(l.o, attn, T, tmp, DType::kBF16, error) ||
          !normFor(l.gateUp.valid() ? l.gateUp : l.gate, tmp, l.postNorm, T,
                   where + " post-attention norm", error))
        return false;
      if (!(l.gateUp.valid()
                ? linear(l.gateUp, h, T, gateUp, DType::kBF16, error, /*inputPrepared=*/true)
                : linearParts({&l.gate, &l.up}, h, T, gateUp, 2 * I, act, error, true)))
        return false;
      const bool swigluOk =
          l.down.w8a8 ? swigluQuant(gateUp, T, I, l.down.w8a8->inputSpec(xq, xScales), stream,
                                    error)
                      : swiglu(gateUp, T, I, act, stream, error);
      if (!check(swigluOk, where + " SwiGLU", error) ||
          !linear(l.down, act, T, tmp, DType::kBF16, error, /*inputPrepared=*/true))
        return false;
      pending = tmp;
    }
    if (!check(rmsNorm(x, pending, finalNorm, T, H, eps, h, stream, error), "final norm", error))
      return false;
    const int64_t R = plan.logitRows;
    if (R == 0)
      return true;
    // The rows that need logits, gathered as an "embedding" of the normed rows.
    return check(embeddingGather(h, EmbeddingType::BF16, T, H, d.logitRows, R, gathered, stream,
                                 error),
                 "gathering the sampled rows", error) &&
           linear(lmHead, gathered, R, logits, DType::kF32, error);
  }

  /// Captures bucket B's forward pass into its graph. A failure is not the
  /// step's: the bucket runs without a graph from then on, said once.
  void capture(int32_t B, const ForwardPlan &plan) {
    Bucket &bk = buckets.at(B);
    std::string why;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
      why = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e);
    } else {
      const bool ok = enqueueForward(plan, padArrays, &why);
      e = cudaStreamEndCapture(stream, &graph);
      if (ok && e != cudaSuccess)
        why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e);
    }
    if (why.empty()) {
      e = cudaGraphInstantiate(&bk.graph, graph, 0);
      if (e != cudaSuccess) {
        bk.graph = nullptr;
        why = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e);
      }
    }
    if (graph)
      cudaGraphDestroy(graph);
    if (why.empty())
      return;
    cudaGetLastError(); // the capture's error is not the step's
    bk.captureFailed = true;
    if (!graphWarningShown) {
      graphWarningShown = true;
      std::fprintf(stderr,
                   "qopt cuda: warning: capturing the decode step of batch %d as a CUDA graph "
                   "failed (%s); such steps run without a graph\n",
                   int(B), why.c_str());
    }
  }

  /// A padded decode step: its arrays up in one copy, then its bucket's
  /// graph (captured on first use) or, graphs off or failed, the same
  /// kernels enqueued one by one.
  bool runPadded(const PaddedDecodeStep &p, std::string *error) {
    const size_t n = packDecodeStep(p, padLayout, &padStaging);
    cudaError_t e = cudaMemcpyAsync(padBuf, padStaging.data(), n, cudaMemcpyHostToDevice, stream);
    if (e != cudaSuccess) {
      *error = std::string("uploading the step arrays: ") + cudaGetErrorString(e);
      return false;
    }
    const ForwardPlan plan = bucketPlan(p.bucket);
    Bucket &bk = buckets.at(p.bucket);
    if (graphsEnabled && !bk.graph && !bk.captureFailed)
      capture(p.bucket, plan);
    if (!bk.graph)
      return enqueueForward(plan, padArrays, error);
    e = cudaGraphLaunch(bk.graph, stream);
    if (e != cudaSuccess) {
      *error = "launching the decode graph of batch " + std::to_string(p.bucket) + ": " +
               cudaGetErrorString(e);
      return false;
    }
    return true;
  }

  /// Draws the first R rows of `logits` on the device (qcuda::sampleTokens)
  /// and copies the R token ids to `tokens`: per-row parameters go up in
  /// one copy, Philox key = seed, counter = the generated index.
  bool sampleRows(const std::vector<SampleSpec> &specs, int32_t *tokens, std::string *error) {
    const size_t R = specs.size();
    auto a256 = [](size_t n) { return (n + 255) / 256 * 256; };
    const size_t oTemp = 0, oTopK = oTemp + a256(R * 4), oTopP = oTopK + a256(R * 4),
                 oSeed = oTopP + a256(R * 4), oStep = oSeed + a256(R * 8),
                 oTok = oStep + a256(R * 8), total = oTok + a256(R * 4);
    if (!ensure(total, &sampleBuf, &sampleCap, "sampling parameters", error))
      return false;
    sampleStaging.assign(oTok, 0);
    uint8_t *st = sampleStaging.data();
    for (size_t r = 0; r < R; ++r) {
      const float temp = specs[r].params.temperature, topP = specs[r].params.topP;
      const int32_t topK = specs[r].params.topK;
      const uint64_t seed = specs[r].seed, step = specs[r].index;
      std::memcpy(st + oTemp + r * 4, &temp, 4);
      std::memcpy(st + oTopK + r * 4, &topK, 4);
      std::memcpy(st + oTopP + r * 4, &topP, 4);
      std::memcpy(st + oSeed + r * 8, &seed, 8);
      std::memcpy(st + oStep + r * 8, &step, 8);
    }
    uint8_t *d = static_cast<uint8_t *>(sampleBuf);
    cudaError_t e = cudaMemcpyAsync(d, st, oTok, cudaMemcpyHostToDevice, stream);
    if (e != cudaSuccess) {
      *error = std::string("uploading the sampling parameters: ") + cudaGetErrorString(e);
      return false;
    }
    SamplingParamsDevice p;
    p.temperature = reinterpret_cast<const float *>(d + oTemp);
    p.topK = reinterpret_cast<const int32_t *>(d + oTopK);
    p.topP = reinterpret_cast<const float *>(d + oTopP);
    p.seed = reinterpret_cast<const uint64_t *>(d + oSeed);
    p.step = reinterpret_cast<const uint64_t *>(d + oStep);
    int32_t *dTokens = reinterpret_cast<int32_t *>(d + oTok);
    if (!check(sampleTokens(logits, int32_t(R), int32_t(V), V, p, dTokens, stream, error),
               "sampling", error))
      return false;
    e = cudaMemcpyAsync(tokens, dTokens, R * 4, cudaMemcpyDeviceToHost, stream);
    if (e != cudaSuccess) {
      *error = std::string("copying the sampled tokens back: ") + cudaGetErrorString(e);
      return false;
    }
    return true;
  }

  /// One step: logits of the rows that need them to `hostLogits`, or, with
  /// `specs`, those rows sampled on the device into `tokens`.
  bool run(const StepBatch &b, float *hostLogits, bool allRows, std::string *error,
           const std::vector<SampleSpec> *specs = nullptr, int32_t *tokens = nullptr) {
    if (b.empty())
      return true;
    const std::string bad = validate(b);
    if (!bad.empty()) {
      *error = "CUDA executor: " + bad;
      return false;
    }
    const int64_t T = b.numTokens();
    std::vector<int32_t> rows;
    if (allRows) {
      for (int32_t t = 0; t < T; ++t)
        rows.push_back(t);
    } else {
      for (int32_t si : b.sampleIndices)
        rows.push_back(b.queryStart[size_t(si + 1)] - 1);
    }
    const int64_t R = int64_t(rows.size());
    PaddedDecodeStep padded;
    if (!allRows && padDecodeStep(b, rows, padding, &padded)) {
      if (!runPadded(padded, error))
        return false;
    } else {
      StepArrays d;
      ForwardPlan plan;
      if (!ensureTokens(T, error) || !ensureLogitRows(R, error) ||
          !uploadStep(b, rows, &d, error) || !eagerPlan(b, R, &plan, error) ||
          !enqueueForward(plan, d, error))
        return false;
    }
    if (specs && R > 0) {
      if (!sampleRows(*specs, tokens, error))
        return false;
    } else if (R > 0) {
      cudaError_t e = cudaMemcpyAsync(hostLogits, logits, size_t(R * V) * 4,
                                      cudaMemcpyDeviceToHost, stream);
      if (e != cudaSuccess) {
        *error = std::string("copying the logits back: ") + cudaGetErrorString(e);
        return false;
      }
    }
    return sync(error);
  }

  bool sync(std::string *error) {
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e == cudaSuccess)
      e = cudaGetLastError();
    if (e != cudaSuccess) {
      *error = std::string("CUDA error during the step (QCUDA_SYNC_EACH_OP=1 names the op): ") +
               cudaGetErrorString(e);
      return false;
    }
    return true;
  }
};

CudaModelExecutor::CudaModelExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModelExecutor::~CudaModelExecutor() = default;

std::unique_ptr<CudaModelExecutor> CudaModelExecutor::create(const qrt::Artifact &artifact,
                                                             const CudaExecutorOptions &options,
                                                             std::string *error) {
  std::string desc;
  if (!cudaDeviceAvailable(options.device, &desc, error))
    return nullptr;
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, options.device);
  const qrt::ArtifactTarget &t = artifact.target();
  // Strict: the kernels are built per architecture (sm_80, sm_89, sm_90a)
  // and the artifact names one; another GPU gets its own artifact.
  if (!t.isCuda() || t.ccMajor != p.major || t.ccMinor != p.minor) {
    *error = "artifact compiled for " + t.isa + ", this GPU is sm" + std::to_string(p.major) +
             std::to_string(p.minor) + " (" + std::to_string(p.major) + "." +
             std::to_string(p.minor) + "); recompile with -target=sm" +
             std::to_string(p.major) + std::to_string(p.minor);
    return nullptr;
  }
  if (options.gpuMemoryUtilization <= 0 || options.gpuMemoryUtilization > 1) {
    *error = "--gpu-memory-utilization must be in (0, 1]";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  impl->device = desc;
  const char *sync = std::getenv("QCUDA_SYNC_EACH_OP");
  impl->syncEachOp = sync && *sync && std::string(sync) != "0";
  // Read once here. Synchronizing after every op cannot happen in a capture.
  const char *noGraphs = std::getenv("QCUDA_NO_GRAPHS");
  const bool envNoGraphs = noGraphs && *noGraphs && std::string(noGraphs) != "0";
  impl->graphsEnabled = options.cudaGraphs && !envNoGraphs && !impl->syncEachOp;
  cudaError_t e = cudaSetDevice(options.device);
  if (e == cudaSuccess)
    e = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    *error = std::string("CUDA device setup: ") + cudaGetErrorString(e);
    return nullptr;
  }
  if (cublasCreate(&impl->blas) != CUBLAS_STATUS_SUCCESS) {
    impl->blas = nullptr;
    *error = "cublasCreate failed";
    return nullptr;
  }
  // The workspace after the stream: cublasSetStream resets it to cuBLAS's
  // own pool, which a graph capture cannot allocate from.
  cublasSetStream(impl->blas, impl->stream);
  if (!impl->alloc(kBlasWorkspaceBytes, &impl->blasWs, "the cuBLAS workspace", error))
    return nullptr;
  if (cublasSetWorkspace(impl->blas, impl->blasWs, kBlasWorkspaceBytes) !=
      CUBLAS_STATUS_SUCCESS) {
    *error = "cublasSetWorkspace failed";
    return nullptr;
  }
  if (!impl->loadWeights(artifact, error) || !impl->checkW8A8Layout(error) ||
      !impl->attachGeneratedKernels(artifact, p.major, p.minor, error) ||
      !impl->alloc(kSplitKWorkspaceBytes, &impl->splitKWs, "the split-K workspace", error))
    return nullptr;
  if (impl->anyW8A8) {
    impl->w8a8Gemm = std::make_unique<W8A8Gemm>();
    if (!impl->w8a8Gemm->init(error))
      return nullptr;
  }
  if (!impl->ensureTokens(std::max<int32_t>(options.maxBatchedTokens, 1), error) ||
      !impl->ensureLogitRows(std::max<int32_t>(options.maxBatchedTokens, 1), error) ||
      !impl->allocatePadding(error) || !impl->allocateKV(error))
    return nullptr;
  return std::unique_ptr<CudaModelExecutor>(new CudaModelExecutor(std::move(impl)));
}

int32_t CudaModelExecutor::vocabSize() const { return int32_t(impl_->V); }
int32_t CudaModelExecutor::numBlocks() const { return impl_->numBlocks; }
int32_t CudaModelExecutor::blockSize() const { return impl_->blockSize; }
uint64_t CudaModelExecutor::weightBytes() const { return impl_->weightBytes; }
uint64_t CudaModelExecutor::kvBytes() const { return impl_->kvBytes; }
std::string CudaModelExecutor::deviceName() const { return impl_->device; }

std::string CudaModelExecutor::kernelsSummary() const {
  const Impl &m = *impl_;
  std::string w8a8;
  if (m.anyW8A8)
    w8a8 = "; W8A8 linears through cuBLASLt";
  if (m.packedLinears == 0)
    return "no weight-only packed weights" + w8a8;
  if (!m.genLibrary)
    return std::string("generic (") +
           (m.genDisabled ? "QRT_NO_CODEGEN is set"
                          : "the artifact has no generated kernels for " + m.genArch) +
           ")" + w8a8;
  return "generated for " + m.genArch + ", " + std::to_string(m.genAttached) + " of " +
         std::to_string(m.packedLinears) + " packed weights" + w8a8;
}

bool CudaModelExecutor::execute(const StepBatch &batch, float *logits, std::string *error) {
  return impl_->run(batch, logits, /*allRows=*/false, error);
}

bool CudaModelExecutor::canSampleOnDevice() const { return impl_->opt.deviceSampling; }

bool CudaModelExecutor::executeAndSample(const StepBatch &batch,
                                         const std::vector<SampleSpec> &rows, int32_t *tokens,
                                         std::string *error) {
  if (rows.size() != batch.sampleIndices.size()) {
    *error = "CUDA executor: " + std::to_string(rows.size()) + " sampling rows for " +
             std::to_string(batch.sampleIndices.size()) + " sampled sequences";
    return false;
  }
  return impl_->run(batch, nullptr, /*allRows=*/false, error, &rows, tokens);
}

bool CudaModelExecutor::executeAllLogits(const StepBatch &batch, float *logits,
                                         std::string *error) {
  return impl_->run(batch, logits, /*allRows=*/true, error);
}

} // namespace qcuda
