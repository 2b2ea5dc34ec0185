//===- gemm_bench.cu - W4A16 GEMM vs the HBM roofline and cuBLAS bf16 ----===//
//
// Prints one JSON object per line:
//   {"bench":"hbm_read"|"hbm_copy", "GBps":...}      measured in the same run
//   {"bench":"gemm","name":"w4a16_g128"|"cublas_bf16", "N","K","M",
//    "time_us","bytes","flops","GBps","TFLOPs","pct_hbm"}
// Weights rotate over enough copies (> 256 MiB together) that each call
// reads them from HBM, not from L2. bench/gpu/report.py turns the lines
// into the device check's table.
//
//===----------------------------------------------------------------------===//
#include "BenchUtil.cuh"
#include "qopt-cuda/WeightOnlyGemm.h"
#include "qopt-cuda/gen/Specialize.cuh"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

const char *const qbench::kBenchName = "gemm_bench";

namespace {

using qbench::deviceAlloc;
using qbench::timeUs;

/// Warm-up calls before each timing.
constexpr int kWarmup = 5;

constexpr size_t kRotateBytes = size_t(256) << 20;

__global__ void fillBytes(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = uint8_t((i * 2654435761u + seed) >> 13);
}
__global__ void fillU16(uint16_t *p, size_t n, uint16_t v) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = v;
}
double measureRead() {
  const size_t bytes = size_t(2) << 30;
  auto *buf = static_cast<uint8_t *>(deviceAlloc(bytes));
  fillBytes<<<4096, 256>>>(buf, bytes, 1);
  const double gbps = qbench::measureRead(buf, bytes, kWarmup);
  void *dst = deviceAlloc(bytes / 2);
  const float cus = timeUs(
      [&](int) { cudaMemcpyAsync(dst, buf, bytes / 2, cudaMemcpyDeviceToDevice); }, 20, kWarmup);
  std::printf("{\"bench\":\"hbm_copy\",\"bytes_read_plus_written\":%zu,\"time_us\":%.2f,\"GBps\":%.1f}\n",
              bytes, cus, bytes / (cus * 1e3));
  cudaFree(dst);
  cudaFree(buf);
  return gbps;
}

void printGemm(const char *name, const char *kernel, int64_t N, int64_t K, int64_t M, float us,
               double bytes, double hbm) {
  const double flops = 2.0 * M * N * K;
  const double gbps = bytes / (us * 1e3);
  std::printf("{\"bench\":\"gemm\",\"name\":\"%s\",\"kernel\":\"%s\",\"N\":%lld,\"K\":%lld,"
              "\"M\":%lld,\"time_us\":%.2f,\"bytes\":%.0f,\"flops\":%.0f,\"GBps\":%.1f,"
              "\"TFLOPs\":%.2f,\"pct_hbm\":%.1f}\n",
              name, kernel, (long long)N, (long long)K, (long long)M, us, bytes, flops, gbps,
              flops / (us * 1e6), 100.0 * gbps / hbm);
  std::fflush(stdout);
}

/// The kernels qopt generates for a model with this shape (the same
/// instantiation its kernels/sm_XX.so holds), for generated-vs-generic rows.
template <int N, int K> qcuda::gen::GenKernel generatedW4G128() {
  return {4,
          128,
          0,
          N,
          K,
          int(qcuda::DType::kBF16),
          &qcuda::gen::launchSmallM<4, 128, 0, N, K>,
          &qcuda::gen::launchTensorCore<4, 128, 0, N, K>};
}

const qcuda::gen::GenKernel *generatedFor(int64_t N, int64_t K) {
  static const qcuda::gen::GenKernel k4096x4096 = generatedW4G128<4096, 4096>(),
                                      k14336x4096 = generatedW4G128<14336, 4096>(),
                                      k4096x14336 = generatedW4G128<4096, 14336>();
  if (N == 4096 && K == 4096)
    return &k4096x4096;
  if (N == 14336 && K == 4096)
    return &k14336x4096;
  if (N == 4096 && K == 14336)
    return &k4096x14336;
  return nullptr;
}

void benchW4A16(int64_t N, int64_t K, const std::vector<int64_t> &ms, double hbm) {
  qcuda::GpuQuantFormat fmt{4, 128, false};
  qcuda::GpuPackedGeometry geo;
  std::string error;
  if (!qcuda::computeGpuGeometry(fmt, N, K, &geo, &error)) {
    std::fprintf(stderr, "gemm_bench: %s\n", error.c_str());
    std::exit(1);
  }
  const size_t codeBytes = size_t(N * geo.wordsPerRow * 4), metaCount = size_t(geo.groups * N);
  const size_t weightBytes = codeBytes + 2 * metaCount * 2;
  const int copies = int((kRotateBytes + weightBytes - 1) / weightBytes);
  std::vector<qcuda::GpuQuantWeights> ws(static_cast<size_t>(copies));
  std::vector<void *> owned;
  for (auto &w : ws) {
    auto *codes = static_cast<uint32_t *>(deviceAlloc(codeBytes));
    auto *scales = static_cast<uint16_t *>(deviceAlloc(metaCount * 2));
    auto *zeros = static_cast<uint16_t *>(deviceAlloc(metaCount * 2));
    fillBytes<<<1024, 256>>>(reinterpret_cast<uint8_t *>(codes), codeBytes, uint32_t(owned.size()));
    fillU16<<<256, 256>>>(scales, metaCount, 0x211F); // ~0.01 in fp16
    fillU16<<<256, 256>>>(zeros, metaCount, 0x4800);  // 8.0
    w = {fmt, geo, codes, scales, zeros};
    owned.insert(owned.end(), {codes, scales, zeros});
  }
  const int64_t maxM = *std::max_element(ms.begin(), ms.end());
  void *x = deviceAlloc(size_t(maxM * K * 2)), *y = deviceAlloc(size_t(maxM * N * 2));
  fillU16<<<256, 256>>>(static_cast<uint16_t *>(x), size_t(maxM * K), 0x3C00);
  // Split-K workspace, as the executor gives it (the kernel splits K when
  // its tiles alone would leave SMs idle).
  const size_t workBytes = qcuda::weightOnlyGemmWorkspaceBytes(maxM, N);
  void *work = deviceAlloc(workBytes);
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // Generic kernels, then the generated ones where this shape has them.
  std::vector<const qcuda::gen::GenKernel *> variants = {nullptr};
  if (const qcuda::gen::GenKernel *g = generatedFor(N, K))
    variants.push_back(g);
  for (int64_t M : ms) {
    for (auto kernel : {qcuda::WeightOnlyKernel::kSmallM, qcuda::WeightOnlyKernel::kTensorCore}) {
      for (const qcuda::gen::GenKernel *special : variants) {
        if (kernel == qcuda::WeightOnlyKernel::kSmallM && M > qcuda::kSmallMMax)
          continue;
        const bool gen = special != nullptr;
        qcuda::WeightOnlyGemmArgs a;
        a.x = x;
        a.xType = qcuda::DType::kBF16;
        a.y = y;
        a.yType = qcuda::DType::kBF16;
        a.M = M;
        a.kernel = kernel;
        a.workspace = work;
        a.workspaceBytes = workBytes;
        const int splits = kernel == qcuda::WeightOnlyKernel::kTensorCore
                               ? qcuda::weightOnlyGemmSplits(M, N, K, workBytes, sms)
                               : 1;
        bool ok = true;
        const float us = timeUs(
            [&](int i) {
              a.w = ws[size_t(i % copies)];
              a.w.special = special;
              ok = ok && qcuda::weightOnlyGemm(a, nullptr, &error);
            },
            50, kWarmup);
        if (!ok) {
          std::printf(
              "{\"bench\":\"gemm\",\"name\":\"w4a16_g128\",\"N\":%lld,\"K\":%lld,\"M\":%lld,"
              "\"error\":\"%s\"}\n",
              (long long)N, (long long)K, (long long)M, error.c_str());
          continue;
        }
        const double bytes = double(weightBytes) + 2.0 * M * K + 2.0 * M * N;
        std::string name = kernel == qcuda::WeightOnlyKernel::kSmallM ? "smallM" : "tensorcore";
        if (splits > 1)
          name += "_split" + std::to_string(splits);
        if (gen)
          name += "_generated";
        printGemm("w4a16_g128", name.c_str(), N, K, M, us, bytes, hbm);
      }
    }
  }
  for (void *p : owned)
    cudaFree(p);
  cudaFree(x);
  cudaFree(y);
  cudaFree(work);
}

void benchCublas(cublasLtHandle_t lt, int64_t N, int64_t K, const std::vector<int64_t> &ms,
                 double hbm) {
  const size_t wBytes = size_t(N * K * 2);
  const int copies = int((kRotateBytes + wBytes - 1) / wBytes);
  std::vector<void *> w(static_cast<size_t>(copies));
  for (auto &p : w) {
    p = deviceAlloc(wBytes);
    fillU16<<<1024, 256>>>(static_cast<uint16_t *>(p), wBytes / 2, 0x3C00);
  }
  const size_t wsBytes = size_t(32) << 20;
  void *workspace = deviceAlloc(wsBytes);
  const int64_t maxM = *std::max_element(ms.begin(), ms.end());
  void *x = deviceAlloc(size_t(maxM * K * 2)), *y = deviceAlloc(size_t(maxM * N * 2));
  fillU16<<<256, 256>>>(static_cast<uint16_t *>(x), size_t(maxM * K), 0x3C00);
  for (int64_t M : ms) {
    // Column-major y^T [N, M] = W [K, N]^T . x^T [K, M] (see W8A8Gemm.cpp).
    cublasLtMatmulDesc_t op;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN));
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes,
                                         sizeof(wsBytes));
    cublasLtMatmulHeuristicResult_t heur{};
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
    if (found == 0) {
      std::printf("{\"bench\":\"gemm\",\"name\":\"cublas_bf16\",\"N\":%lld,\"K\":%lld,\"M\":%lld,"
                  "\"error\":\"no cuBLASLt algorithm\"}\n",
                  (long long)N, (long long)K, (long long)M);
    } else {
      const float alpha = 1.f, beta = 0.f;
      const float us = timeUs(
          [&](int i) {
            cublasLtMatmul(lt, op, &alpha, w[size_t(i % copies)], la, x, lb, &beta, y, lc, y, lc,
                           &heur.algo, workspace, wsBytes, nullptr);
          },
          50, kWarmup);
      const double bytes = double(wBytes) + 2.0 * M * K + 2.0 * M * N;
      printGemm("cublas_bf16", "cublasLt", N, K, M, us, bytes, hbm);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatmulDescDestroy(op);
  }
  for (void *p : w)
    cudaFree(p);
  cudaFree(workspace);
  cudaFree(x);
  cudaFree(y);
}

} // namespace

int main() {
  if (!qbench::announceDevice())
    return 0;
  const double hbm = measureRead();
  const std::vector<int64_t> ms = {1, 16, 32, 64, 256};
  const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
  cublasLtHandle_t lt;
  if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "gemm_bench: cublasLtCreate failed\n");
    return 1;
  }
  for (const auto &nk : shapes) {
    benchW4A16(nk[0], nk[1], ms, hbm);
    benchCublas(lt, nk[0], nk[1], ms, hbm);
  }
  cublasLtDestroy(lt);
  return 0;
}
