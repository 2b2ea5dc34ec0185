//===- PackedLayout.cpp - packer for the x86 quantized-kernel layouts -----===//
//
// Reference layout (one code per weight) -> interleaved 16-row tiles. The
// packer validates every value it copies, since its input may come from a
// file: a bad code, zero or scale is an error naming the row and group,
// never a silently different matrix.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/PackedLayout.h"

#include "qopt-rt/half.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qrt::kernels {

namespace {

/// Offset of group g's superblock within a tile.
inline int64_t superblockOffset(const PackedGeometry &g, int64_t group) {
  return group / kGroupsPerSuperblock * g.superblockStride;
}
inline int64_t scaleOffset(const PackedGeometry &g, int64_t group, int r) {
  return superblockOffset(g, group) + (group % kGroupsPerSuperblock) * 32 + 2 * r;
}
inline int64_t zeroOffset(const PackedGeometry &g, int64_t group, int r) {
  return superblockOffset(g, group) + kGroupsPerSuperblock * 32 +
         (group % kGroupsPerSuperblock) * 16 + r;
}

/// Byte offset in a tile and nibble shift of (row r in tile, column k): see
/// ChunkI4x16 / ChunkI8x16 and PackedGeometry.
inline void codePosition(const PackedGeometry &g, int bits, int r, int64_t k, int64_t *byte,
                         int *shift) {
  const int64_t group = k / g.groupSize, kk = k % g.groupSize;
  const int64_t base = superblockOffset(g, group) + g.metaBytes +
                       (group % kGroupsPerSuperblock) * g.groupCodeBytes;
  if (bits == 4) {
    *byte = base + (kk / 8) * 64 + 4 * r + (kk & 3);
    *shift = (kk & 4) ? 4 : 0;
  } else {
    *byte = base + (kk / 4) * 64 + 4 * r + (kk & 3);
    *shift = 0;
  }
}

} // namespace

std::string layoutId(const PackedFormat &f) {
  std::string id = "x86_i" + std::to_string(f.bits);
  if (f.symmetric)
    id += "sym";
  id += f.groupSize == 0 ? std::string("_pc") : "_g" + std::to_string(f.groupSize);
  id += "_n" + std::to_string(kTileRows);
  return id;
}

bool validateFormat(const PackedFormat &f, std::string *error) {
  if (f.bits != 4 && f.bits != 8) {
    *error = "packed format: bits must be 4 or 8, got " + std::to_string(f.bits);
    return false;
  }
  if (f.groupSize < 0 || f.groupSize % kActBlock != 0 || f.groupSize > (1 << 20)) {
    *error = "packed format: group size must be 0 (per-channel) or a positive multiple of " +
             std::to_string(kActBlock) + " up to 2^20, got " + std::to_string(f.groupSize);
    return false;
  }
  return true;
}

bool parseLayoutId(const std::string &id, PackedFormat *format, std::string *error) {
  // x86_i<bits>[sym]_<g<N>|pc>_n16
  auto fail = [&] {
    *error = "unknown kernel layout '" + id + "' (expected e.g. x86_i4_g128_n16)";
    return false;
  };
  const std::string prefix = "x86_i";
  if (id.compare(0, prefix.size(), prefix) != 0)
    return fail();
  size_t p = prefix.size();
  PackedFormat f;
  if (id.compare(p, 1, "4") == 0)
    f.bits = 4;
  else if (id.compare(p, 1, "8") == 0)
    f.bits = 8;
  else
    return fail();
  ++p;
  if (id.compare(p, 3, "sym") == 0) {
    f.symmetric = true;
    p += 3;
  }
  if (id.compare(p, 3, "_pc") == 0) {
    f.groupSize = 0;
    p += 3;
  } else if (id.compare(p, 2, "_g") == 0) {
    p += 2;
    size_t q = p;
    int64_t g = 0;
    while (q < id.size() && id[q] >= '0' && id[q] <= '9' && q - p < 8)
      g = g * 10 + (id[q++] - '0');
    if (q == p || g == 0)
      return fail();
    f.groupSize = int(g);
    p = q;
  } else {
    return fail();
  }
  if (id.substr(p) != "_n" + std::to_string(kTileRows))
    return fail();
  std::string why;
  if (!validateFormat(f, &why)) {
    *error = "kernel layout '" + id + "': " + why;
    return false;
  }
  *format = f;
  return true;
}

bool computeGeometry(const PackedFormat &f, int64_t rows, int64_t cols, PackedGeometry *g,
                     std::string *error) {
  if (!validateFormat(f, error))
    return false;
  const int64_t kLimit = int64_t(1) << 32;
  if (rows <= 0 || cols <= 0 || rows > kLimit || cols > kLimit) {
    *error = "packed matrix: bad shape " + std::to_string(rows) + "x" + std::to_string(cols);
    return false;
  }
  // Guard the product before forming it: a header could ask for anything.
  const PackedGeometry probe = geometryOf(f.bits, f.groupSize, f.symmetric, 1, cols);
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  if (probe.tileStride > (int64_t(1) << 40) / tiles) {
    *error = "packed matrix: " + std::to_string(rows) + "x" + std::to_string(cols) +
             " exceeds 2^40 bytes";
    return false;
  }
  *g = geometryOf(f.bits, f.groupSize, f.symmetric, rows, cols);
  return true;
}

bool packWeights(const RefQuantMatrix &ref, const PackedFormat &f, uint8_t *out, size_t outBytes,
                 std::string *error) {
  if (ref.bits != f.bits || ref.symmetric != f.symmetric ||
      (f.groupSize == 0 ? ref.groupSize != 0 : ref.groupSize != f.groupSize)) {
    *error = "pack: reference matrix (bits " + std::to_string(ref.bits) + ", group " +
             std::to_string(ref.groupSize) + (ref.symmetric ? ", symmetric" : ", asymmetric") +
             ") does not match layout " + layoutId(f);
    return false;
  }
  PackedGeometry g;
  if (!computeGeometry(f, ref.rows, ref.cols, &g, error))
    return false;
  if (!ref.codes || !ref.scales || (!f.symmetric && !ref.zeros)) {
    *error = "pack: missing codes, scales or zeros";
    return false;
  }
  if (outBytes < size_t(g.totalBytes)) {
    *error = "pack: output buffer has " + std::to_string(outBytes) + " bytes, needs " +
             std::to_string(g.totalBytes);
    return false;
  }
  // Reference groups per row: per-channel has one, else ceil(cols / group).
  const int64_t refGroups = f.groupSize == 0 ? 1 : (ref.cols + f.groupSize - 1) / f.groupSize;
  const int maxCode = (1 << f.bits) - 1;
  const int implied = 1 << (f.bits - 1);
  std::memset(out, 0, size_t(g.totalBytes));

  for (int64_t t = 0; t < g.tiles; ++t) {
    uint8_t *tile = out + t * g.tileStride;
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t n = t * kTileRows + r;
      if (n >= ref.rows)
        break; // padded rows stay all-zero: scale 0 makes them 0
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const float s = ref.scales[n * refGroups + gi];
        const uint16_t h = f32ToF16(s);
        if (!std::isfinite(s) || f16ToF32(h) != s) {
          *error = "pack: scale " + std::to_string(s) + " of row " + std::to_string(n) +
                   " group " + std::to_string(gi) + " is not an exact fp16 value";
          return false;
        }
        std::memcpy(tile + scaleOffset(g, gi, r), &h, 2);
        int zero = implied;
        if (!f.symmetric) {
          const float z = ref.zeros[n * refGroups + gi];
          if (!(z >= 0.0f && z <= 255.0f) || z != std::floor(z)) {
            *error = "pack: zero point " + std::to_string(z) + " of row " + std::to_string(n) +
                     " group " + std::to_string(gi) + " is not an integer in [0, 255]";
            return false;
          }
          zero = int(z);
          tile[zeroOffset(g, gi, r)] = uint8_t(zero);
        }
        const int64_t k0 = gi * g.groupSize;
        const int64_t k1 = k0 + g.groupSize;
        for (int64_t k = k0; k < k1; ++k) {
          int code;
          if (k < ref.cols) {
            code = ref.codes[n * ref.cols + k];
            if (code > maxCode) {
              *error = "pack: code " + std::to_string(code) + " at row " + std::to_string(n) +
                       " column " + std::to_string(k) + " exceeds " + std::to_string(f.bits) +
                       " bits";
              return false;
            }
          } else {
            // Padding dequantizes to exactly 0; a 4-bit layout can only do
            // that when the zero fits in a nibble, otherwise the activation
            // side's zero padding makes the product 0 anyway.
            code = zero <= maxCode ? zero : 0;
          }
          int64_t byte;
          int shift;
          codePosition(g, f.bits, r, k, &byte, &shift);
          tile[byte] |= uint8_t(code << shift);
        }
      }
    }
  }
  return true;
}

void dequantizePacked(const PackedView &p, float *out) {
  const PackedGeometry &g = p.geometry;
  const int implied = 1 << (p.format.bits - 1);
  for (int64_t n = 0; n < g.rows; ++n) {
    const int64_t t = n / kTileRows;
    const int r = int(n % kTileRows);
    const uint8_t *tile = p.data + t * g.tileStride;
    for (int64_t k = 0; k < g.cols; ++k) {
      const int64_t gi = k / g.groupSize;
      int64_t byte;
      int shift;
      codePosition(g, p.format.bits, r, k, &byte, &shift);
      const int code = (tile[byte] >> shift) & ((1 << p.format.bits) - 1);
      const int zero = p.format.symmetric ? implied : tile[zeroOffset(g, gi, r)];
      uint16_t h;
      std::memcpy(&h, tile + scaleOffset(g, gi, r), 2);
      out[n * g.cols + k] = float(code - zero) * f16ToF32(h);
    }
  }
}

void PackedMatrix::FreeDeleter::operator()(uint8_t *p) const { std::free(p); }

bool PackedMatrix::pack(const RefQuantMatrix &ref, const PackedFormat &format,
                        std::string *error) {
  PackedGeometry g;
  if (!computeGeometry(format, ref.rows, ref.cols, &g, error))
    return false;
  auto *p = static_cast<uint8_t *>(std::aligned_alloc(kPackAlign, size_t(g.totalBytes)));
  if (!p) {
    *error = "pack: cannot allocate " + std::to_string(g.totalBytes) + " bytes";
    return false;
  }
  std::unique_ptr<uint8_t, FreeDeleter> data(p);
  if (!packWeights(ref, format, p, size_t(g.totalBytes), error))
    return false;
  format_ = format;
  geometry_ = g;
  data_ = std::move(data);
  return true;
}

} // namespace qrt::kernels
