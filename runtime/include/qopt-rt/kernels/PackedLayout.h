//===- PackedLayout.h - weight layouts of the x86 quantized kernels -*- C++ -*-===//
//
// The packed form of a weight-only-quantized matrix W [N, K] (N output rows,
// K inputs) that the CPU GEMV/GEMM kernels read directly, and the packer
// that builds it from the reference layout (one code per weight + scales +
// zeros, the compiler's QuantizedMatrix semantics). The kernels dequantize
// in registers; no fp32 copy of the weights ever exists.
//
// Rows are grouped in tiles of 16 so one 512-bit register holds one int32 /
// fp32 lane per output row: the codes of 16 rows for a few consecutive
// columns are interleaved in 64-byte chunks (structs below). A tile is a
// sequence of superblocks of up to 4 groups, each
//   [ScalesX16 x 4][ZerosX16 x 4 (asymmetric only)][code chunks of group 0..3]
// so a kernel reads every tile as one forward stream; all parts are
// multiples of 64 bytes and tiles follow one another. The full design and
// its reasons are in docs/kernels-cpu.md.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_RT_KERNELS_PACKEDLAYOUT_H
#define QOPT_RT_KERNELS_PACKEDLAYOUT_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace qrt::kernels {

/// Rows per tile: one 512-bit register of int32/fp32 lanes.
constexpr int kTileRows = 16;
/// Columns per activation block when activations are quantized to int8
/// (one fp32 scale per block); group sizes are multiples of it.
constexpr int kActBlock = 32;
/// Alignment of tiles (and what `data` of a packed matrix should have).
constexpr int kPackAlign = 64;
/// Groups per superblock: the scales and zeros of 4 groups (4 x 48 or
/// 4 x 32 bytes) are whole cache lines.
constexpr int kGroupsPerSuperblock = 4;

/// 16 rows x 8 columns of 4-bit codes. For the chunk that starts at column
/// 8c, byte 4r+i holds row r's code of column 8c+i in its low nibble and of
/// column 8c+4+i in its high nibble (i = 0..3). So the low nibbles of a
/// 64-byte load are 16 int32 lanes of 4 consecutive codes each, exactly the
/// operand `vpdpbusd` multiplies by 4 broadcast activation bytes.
struct ChunkI4x16 {
  uint8_t q[64];
};
static_assert(sizeof(ChunkI4x16) == 64, "ChunkI4x16 must be one cache line");

/// 16 rows x 4 columns of 8-bit codes: byte 4r+i is row r's code of column
/// 4c+i (one int32 lane per row, as for ChunkI4x16's low nibbles).
struct ChunkI8x16 {
  uint8_t q[64];
};
static_assert(sizeof(ChunkI8x16) == 64, "ChunkI8x16 must be one cache line");

/// One group's fp16 scales for the 16 rows of a tile (row r in d[r]).
struct ScalesX16 {
  uint16_t d[kTileRows];
};
static_assert(sizeof(ScalesX16) == 32, "ScalesX16 must be 16 fp16 values");

/// One group's integer zero points for the 16 rows of a tile (asymmetric
/// formats only; symmetric ones imply 2^(bits-1)).
struct ZerosX16 {
  uint8_t z[kTileRows];
};
static_assert(sizeof(ZerosX16) == 16, "ZerosX16 must be 16 bytes");

/// What a packed matrix holds: bit width, group size, zero points.
struct PackedFormat {
  int bits = 4;         ///< 4 or 8
  int groupSize = 128;  ///< multiple of 32 (kActBlock); 0 = one group per row
  bool symmetric = false; ///< zero implied 2^(bits-1), no zeros stored
};

/// "x86_i4_g128_n16", "x86_i4sym_g32_n16", "x86_i8_pc_n16", ...: the layout
/// id the artifact's manifest records ("pc" = per-channel, one group).
std::string layoutId(const PackedFormat &format);
/// Parses a layout id. False with *error for anything else.
bool parseLayoutId(const std::string &id, PackedFormat *format, std::string *error);
/// False with *error when the format is not one the kernels implement.
bool validateFormat(const PackedFormat &format, std::string *error);

/// Sizes and offsets of one packed matrix (all in bytes unless noted).
/// Within a tile, group g lives in superblock j = g / 4 (slot i = g % 4):
///   scales at j * superblockStride + 32 i,
///   zeros  at j * superblockStride + 128 + 16 i (asymmetric),
///   codes  at j * superblockStride + metaBytes + i * groupCodeBytes.
/// The last superblock of a tile may hold fewer than 4 groups (its unused
/// scale/zero slots are zero and its codes end early).
struct PackedGeometry {
  int64_t rows = 0, cols = 0;  ///< N, K
  int64_t paddedCols = 0;      ///< K rounded up to the group size (per-channel: to 32)
  int64_t groupSize = 0;       ///< effective group size in columns (per-channel: paddedCols)
  int64_t groups = 0;          ///< groups per row (paddedCols / groupSize)
  int64_t tiles = 0;           ///< ceil(N / 16)
  int64_t groupCodeBytes = 0;  ///< code chunks of one group of one tile
  int64_t metaBytes = 0;       ///< scales (+ zeros) of one superblock: 128 or 192
  int64_t superblockStride = 0; ///< metaBytes + 4 * groupCodeBytes
  int64_t tileStride = 0;      ///< bytes from one tile to the next (multiple of 64)
  int64_t totalBytes = 0;      ///< tiles * tileStride
};
/// The geometry of an N x K matrix of `bits`-bit codes in groups of
/// `groupSize` columns (0 = per-channel), unchecked: the one formula both
/// computeGeometry (which validates first) and the generated,
/// shape-specialized kernels (kernels/gen/Specialize.h, at compile time)
/// use.
constexpr PackedGeometry geometryOf(int bits, int groupSize, bool symmetric, int64_t rows,
                                    int64_t cols) {
  PackedGeometry out;
  out.rows = rows;
  out.cols = cols;
  const int64_t unit = groupSize == 0 ? kActBlock : groupSize;
  out.paddedCols = (cols + unit - 1) / unit * unit;
  out.groupSize = groupSize == 0 ? out.paddedCols : groupSize;
  out.groups = out.paddedCols / out.groupSize;
  out.tiles = (rows + kTileRows - 1) / kTileRows;
  out.groupCodeBytes = out.groupSize * kTileRows * bits / 8;
  out.metaBytes = kGroupsPerSuperblock *
                  int64_t(sizeof(ScalesX16) + (symmetric ? 0 : sizeof(ZerosX16)));
  out.superblockStride = out.metaBytes + kGroupsPerSuperblock * out.groupCodeBytes;
  const int64_t superblocks = (out.groups + kGroupsPerSuperblock - 1) / kGroupsPerSuperblock;
  // Every part is a multiple of 64 bytes already (group sizes are multiples
  // of 32 columns); the round-up only states the invariant.
  const int64_t bytes = superblocks * out.metaBytes + out.groups * out.groupCodeBytes;
  out.tileStride = (bytes + kPackAlign - 1) / kPackAlign * kPackAlign;
  out.totalBytes = out.tiles * out.tileStride;
  return out;
}

/// Geometry of an N x K matrix in `format`. False with *error for a bad
/// format, non-positive or absurd (> 2^40 bytes) sizes.
bool computeGeometry(const PackedFormat &format, int64_t rows, int64_t cols,
                     PackedGeometry *geometry, std::string *error);

/// The reference layout, as the compiler's quant::QuantizedMatrix (which the
/// runtime must not include): codes [rows, cols] one per byte, scales and
/// zeros [rows, groups] row-major, w = (code - zero) * scale. Symmetric
/// formats have no zeros (the midpoint 2^(bits-1) is implied).
struct RefQuantMatrix {
  int64_t rows = 0, cols = 0;
  int bits = 4;
  int64_t groupSize = 128;      ///< 0 = per-channel (one group per row)
  bool symmetric = false;
  const uint8_t *codes = nullptr;  ///< [rows, cols]
  const float *scales = nullptr;   ///< [rows, groups]; must be fp16-representable
  const float *zeros = nullptr;    ///< [rows, groups] integers in [0, 255]; null if symmetric
};

struct SpecializedGemm;

/// Non-owning view of a packed matrix (e.g. inside a memory-mapped artifact).
struct PackedView {
  PackedFormat format;
  PackedGeometry geometry;
  const uint8_t *data = nullptr; ///< geometry.totalBytes, 64-byte aligned preferred
  /// Kernels generated for exactly this format and shape (Specialized.h),
  /// or null for the generic ones.
  const SpecializedGemm *special = nullptr;
};

/// Packs `ref` into `out` (geometry.totalBytes of them, see computeGeometry).
/// Codes of the padded columns are the zero point (they dequantize to 0);
/// padded rows have scale 0. False with *error naming the row/group for a
/// code out of range, a zero that is not an integer in [0, 255], or a scale
/// that fp16 does not represent exactly (or is not finite).
bool packWeights(const RefQuantMatrix &ref, const PackedFormat &format, uint8_t *out,
                 size_t outBytes, std::string *error);

/// Dequantizes a packed matrix back to fp32 [rows, cols] (tests, debugging).
void dequantizePacked(const PackedView &packed, float *out);

/// Owning, 64-byte-aligned packed matrix.
class PackedMatrix {
public:
  PackedMatrix() = default;
  /// Packs `ref`; false with *error as packWeights.
  bool pack(const RefQuantMatrix &ref, const PackedFormat &format, std::string *error);
  PackedView view() const { return {format_, geometry_, data_.get()}; }
  const PackedGeometry &geometry() const { return geometry_; }
  const uint8_t *data() const { return data_.get(); }

private:
  struct FreeDeleter {
    void operator()(uint8_t *p) const;
  };
  PackedFormat format_;
  PackedGeometry geometry_;
  std::unique_ptr<uint8_t, FreeDeleter> data_;
};

} // namespace qrt::kernels

#endif
