//===- GpuPackedLayout.h - weight layout of the CUDA W4A16/W8A16 GEMMs -*- C++ -*-===//
//
// The packed form of a weight-only-quantized matrix W [N, K] that the CUDA
// kernels (WeightOnlyGemm.h) read, and its host packer from the reference
// layout (qrt::kernels::RefQuantMatrix: one code per weight, scales and
// zeros [N, groups], w = (code - zero) * scale). Plain C++: the compiler
// packs at qopt time for -target=sm80|sm89|sm90 without CUDA.
//
// Layout (docs/cuda.md, "Packed layout"):
//   codes  [N][K * bits / 32] uint32, row-major: word j of row n holds the
//          codes of columns 8j..8j+7 (4-bit) or 4j..4j+3 (8-bit, byte i =
//          column 4j+i), unsigned. 4-bit nibbles are interleaved: nibble p
//          holds column 8j + 2p for p < 4 and 8j + 2(p-4) + 1 for p >= 4,
//          so (word >> 4t) & 0x000F000F puts the codes of columns 2t and
//          2t+1 in the two 16-bit halves: the pair an mma.sync B fragment
//          takes, widened in one and+or (kGpuNibbleColumn).
//   scales [groups][N] fp16 bits, group-major: a tile of rows reads one
//          contiguous run per group.
//   zeros  [groups][N] fp16 bits (integers), asymmetric formats only;
//          symmetric formats imply 2^(bits-1).
// Each row's codes are whole 16-byte vectors (K % 64 == 0), so a thread's
// one 16-byte load is 32 (4-bit) or 16 (8-bit) consecutive codes of a row,
// all in one group (group sizes are multiples of 32).
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_CUDA_GPUPACKEDLAYOUT_H
#define QOPT_CUDA_GPUPACKEDLAYOUT_H

#include <cstdint>
#include <string>
#include <vector>

namespace qrt::kernels {
struct RefQuantMatrix;
}

namespace qcuda {

/// Column (within its word's 8) of the code in 4-bit nibble p.
constexpr int kGpuNibbleColumn[8] = {0, 2, 4, 6, 1, 3, 5, 7};
/// Nibble that holds column c (within its word's 8): the inverse.
constexpr int kGpuColumnNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/// Bit width, group size and zero points of a GPU-packed matrix.
struct GpuQuantFormat {
  int bits = 4;           ///< 4 or 8
  int groupSize = 128;    ///< multiple of 32; 0 = per-channel (one group per row)
  bool symmetric = false; ///< no zeros stored; zero = 2^(bits-1)
};

/// Sizes of a GPU-packed N x K matrix.
struct GpuPackedGeometry {
  int64_t rows = 0, cols = 0; ///< N, K
  int64_t groupSize = 0;      ///< effective group size (per-channel: K)
  int64_t groups = 0;         ///< ceil(K / groupSize): the last group may be partial
  int64_t wordsPerRow = 0;    ///< K * bits / 32
};

/// Shapes the kernels take: N and K multiples of 64 (whole 16-byte code
/// vectors and whole k-tiles, no tails), group size a multiple of 32 or 0.
/// False with *error saying which dimension or field is wrong.
bool computeGpuGeometry(const GpuQuantFormat &format, int64_t rows, int64_t cols,
                        GpuPackedGeometry *geometry, std::string *error);

/// A packed matrix in host memory, ready to copy to the device as is.
struct GpuPackedHost {
  GpuQuantFormat format;
  GpuPackedGeometry geometry;
  std::vector<uint32_t> codes;  ///< [N][wordsPerRow]
  std::vector<uint16_t> scales; ///< [groups][N] fp16 bits
  std::vector<uint16_t> zeros;  ///< [groups][N] fp16 bits; empty if symmetric
};

/// Packs `ref` (its bits, group size and symmetry give the format). False
/// with *error naming the row/group for a code out of range, a zero that is
/// not an integer in [0, 255], a scale that fp16 does not hold
/// exactly, or a shape computeGpuGeometry refuses.
bool packForGpu(const qrt::kernels::RefQuantMatrix &ref, GpuPackedHost *out,
                std::string *error);

} // namespace qcuda

#endif
