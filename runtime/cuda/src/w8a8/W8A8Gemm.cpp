//===- W8A8Gemm.cpp - INT8 / FP8 GEMM through cuBLASLt --------------------===//
//
// cuBLAS is column-major: the row-major y [M, N] is its N x M matrix, so
// y^T = W . x^T with W [N, K] read as a transposed K x N matrix (op T) and
// x [M, K] as a K x M one (op N): the "TN" form the 8-bit kernels require.
// The product lands in an int32 (INT8) or fp32 (FP8) buffer; the epilogue
// kernel then applies per-token x per-channel scales, which cuBLASLt's
// per-tensor scale pointers cannot express.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/W8A8Gemm.h"

#include "w8a8/W8A8Epilogue.h"

#include <cublasLt.h>

namespace qcuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

std::string ltError(const char *what, cublasStatus_t st) {
  return std::string("W8A8Gemm: ") + what + " failed: cuBLASLt status " +
         std::to_string(int(st));
}

/// Descriptors of one call, destroyed on every path.
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref)
      cublasLtMatmulPreferenceDestroy(pref);
    if (c)
      cublasLtMatrixLayoutDestroy(c);
    if (b)
      cublasLtMatrixLayoutDestroy(b);
    if (a)
      cublasLtMatrixLayoutDestroy(a);
    if (op)
      cublasLtMatmulDescDestroy(op);
  }
};

/// The largest power of two (up to cuBLASLt's default assumption, 256)
/// dividing the address.
uint32_t pointerAlignment(const void *p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0)
    a /= 2;
  return a;
}

} // namespace

W8A8Gemm::~W8A8Gemm() {
  if (workspace_)
    cudaFree(workspace_);
  if (handle_)
    cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

bool W8A8Gemm::init(std::string *error) {
  cublasLtHandle_t h = nullptr;
  const cublasStatus_t st = cublasLtCreate(&h);
  if (st != CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtCreate", st);
    return false;
  }
  handle_ = h;
  const cudaError_t err = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (err != cudaSuccess) {
    workspace_ = nullptr;
    *error = std::string("W8A8Gemm: workspace allocation failed: ") + cudaGetErrorString(err);
    return false;
  }
  workspaceBytes_ = kWorkspaceBytes;
  return true;
}

bool W8A8Gemm::run(const W8A8GemmArgs &a, cudaStream_t stream, std::string *error) {
  if (!handle_) {
    *error = "W8A8Gemm: run before a successful init";
    return false;
  }
  if (!a.xq || !a.xScales || !a.wq || !a.wScales || !a.y || !a.accum) {
    *error = "W8A8Gemm: null xq, xScales, wq, wScales, y or accum";
    return false;
  }
  if (a.M <= 0 || a.N <= 0 || a.K <= 0 || a.K % 16 != 0 || a.N % 4 != 0) {
    *error = "W8A8Gemm: need M, N, K > 0, K % 16 == 0 and N % 4 == 0; got M=" +
             std::to_string(a.M) + " N=" + std::to_string(a.N) + " K=" + std::to_string(a.K);
    return false;
  }
  const bool isInt = a.type == Q8Type::kInt8;
  const cudaDataType_t inType = isInt ? CUDA_R_8I : CUDA_R_8F_E4M3;
  const cudaDataType_t accType = isInt ? CUDA_R_32I : CUDA_R_32F;
  LtDescs d;
  cublasStatus_t st = cublasLtMatmulDescCreate(
      &d.op, isInt ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F, accType);
  if (st != CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatmulDescCreate", st);
    return false;
  }
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  if ((st = cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opT,
                                           sizeof(opT))) != CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opN,
                                           sizeof(opN))) != CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatmulDescSetAttribute (transposes)", st);
    return false;
  }
  if ((st = cublasLtMatrixLayoutCreate(&d.a, inType, uint64_t(a.K), uint64_t(a.N), a.K)) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatrixLayoutCreate(&d.b, inType, uint64_t(a.K), uint64_t(a.M), a.K)) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatrixLayoutCreate(&d.c, accType, uint64_t(a.N), uint64_t(a.M), a.N)) !=
          CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatrixLayoutCreate", st);
    return false;
  }
  if ((st = cublasLtMatmulPreferenceCreate(&d.pref)) != CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatmulPreferenceCreate", st);
    return false;
  }
  // The heuristic assumes 256-byte aligned matrices unless told otherwise:
  // give it each pointer's real alignment, so that a caller passing an
  // offset into a larger buffer gets an algorithm that can read it.
  const uint32_t alignA = pointerAlignment(a.wq), alignB = pointerAlignment(a.xq),
                 alignC = pointerAlignment(a.accum);
  if ((st = cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &workspaceBytes_, sizeof(workspaceBytes_))) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                 &alignA, sizeof(alignA))) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                 &alignB, sizeof(alignB))) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                 &alignC, sizeof(alignC))) !=
          CUBLAS_STATUS_SUCCESS ||
      (st = cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                 &alignC, sizeof(alignC))) !=
          CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatmulPreferenceSetAttribute", st);
    return false;
  }
  auto lt = static_cast<cublasLtHandle_t>(handle_);
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  st = cublasLtMatmulAlgoGetHeuristic(lt, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &heur, &found);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0)
    st = heur.state; // the returned algorithm is usable only when this is SUCCESS
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    *error = std::string("W8A8Gemm: cuBLASLt has no ") + (isInt ? "INT8" : "FP8 E4M3") +
             " algorithm for M=" + std::to_string(a.M) + " N=" + std::to_string(a.N) +
             " K=" + std::to_string(a.K) + " with operands aligned to " +
             std::to_string(alignA) + "/" + std::to_string(alignB) + "/" +
             std::to_string(alignC) + " bytes on this device (FP8 needs sm_89+), status " +
             std::to_string(int(st));
    return false;
  }
  const int32_t oneI = 1, zeroI = 0;
  const float oneF = 1.f, zeroF = 0.f;
  const void *alpha = isInt ? static_cast<const void *>(&oneI) : &oneF;
  const void *beta = isInt ? static_cast<const void *>(&zeroI) : &zeroF;
  st = cublasLtMatmul(lt, d.op, alpha, a.wq, d.a, a.xq, d.b, beta, a.accum, d.c, a.accum, d.c,
                      &heur.algo, workspace_, workspaceBytes_, stream);
  if (st != CUBLAS_STATUS_SUCCESS) {
    *error = ltError("cublasLtMatmul", st);
    return false;
  }
  const cudaError_t err = detail::launchW8A8Epilogue(a.accum, isInt, a.xScales, a.wScales,
                                                     a.bias, a.y, a.yType, a.M, a.N, stream);
  if (err != cudaSuccess) {
    *error = std::string("W8A8Gemm: epilogue launch failed: ") + cudaGetErrorString(err);
    return false;
  }
  return true;
}

} // namespace qcuda
