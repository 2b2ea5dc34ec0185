//===- QuantFormat.cpp - weight format names, groups, sizes, attributes ---===//
//
// A Format is what -wquant/-group-size/-wquant-sym and the IR's
// #qllm.quant attribute both describe. This file parses the names, counts
// the stored bits honestly (codes, row padding, scales, zeros, NF4's
// double-quantized absmax) and converts to and from the attribute.
//
//===----------------------------------------------------------------------===//
#include "qopt/Quant/QuantFormat.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <algorithm>
#include <optional>

namespace qopt::quant {

int64_t Format::numGroups(int64_t cols) const {
  int64_t g = effectiveGroup(cols);
  return g <= 0 ? 0 : (cols + g - 1) / g;
}

int64_t Format::effectiveGroup(int64_t cols) const {
  return groupSize == -1 ? cols : groupSize;
}

int64_t Format::groupBegin(int64_t g, int64_t cols) const {
  return std::min(g * effectiveGroup(cols), cols);
}

int64_t Format::groupEnd(int64_t g, int64_t cols) const {
  return std::min((g + 1) * effectiveGroup(cols), cols);
}

int64_t Format::packedRowBytes(int64_t cols) const { return (cols * int64_t(bits) + 7) / 8; }

int64_t Format::absmaxChunks(int64_t rows, int64_t cols) const {
  return (rows * numGroups(cols) + kNF4AbsmaxChunk - 1) / kNF4AbsmaxChunk;
}

int64_t Format::storedBytes(int64_t rows, int64_t cols) const {
  int64_t groups = rows * numGroups(cols);
  int64_t bytes = rows * packedRowBytes(cols);
  switch (kind) {
  case qllm::ElementKind::Int:
    bytes += groups * 2; // fp16 scales
    if (!symmetric)
      bytes += groups; // ui8 zero points
    break;
  case qllm::ElementKind::NF4:
    // ui8 absmax codes, and an fp32 (offset, scale) pair per chunk.
    bytes += groups + absmaxChunks(rows, cols) * 8;
    break;
  case qllm::ElementKind::FP8E4M3:
    bytes += groups * 4; // fp32 scales
    break;
  }
  return bytes;
}

double Format::bitsPerWeight(int64_t rows, int64_t cols) const {
  if (rows <= 0 || cols <= 0)
    return 0;
  return double(storedBytes(rows, cols)) * 8.0 / (double(rows) * double(cols));
}

DType Format::scaleDType() const {
  return kind == qllm::ElementKind::Int ? DType::F16 : DType::F32;
}

std::string Format::str() const {
  std::string group = groupSize == -1 ? "per-channel" : "g" + std::to_string(groupSize);
  switch (kind) {
  case qllm::ElementKind::Int:
    return "int" + std::to_string(bits) + " " + group + (symmetric ? " sym" : " asym");
  case qllm::ElementKind::NF4:
    return "nf4 " + group;
  case qllm::ElementKind::FP8E4M3:
    return "fp8_e4m3 " + group;
  }
  return "?";
}

std::string Format::spec() const {
  std::string group = groupSize == -1 ? "gchannel" : "g" + std::to_string(groupSize);
  switch (kind) {
  case qllm::ElementKind::Int:
    return "int" + std::to_string(bits) + ":" + group + (symmetric ? ":sym" : ":asym");
  case qllm::ElementKind::NF4:
    return "nf4:" + group;
  case qllm::ElementKind::FP8E4M3:
    return "fp8";
  }
  return "?";
}

/// Parses one ':'-separated modifier of a format name into the group size
/// or symmetry. False when it is none of gN, gchannel, g-1, sym, asym.
static bool parseModifier(llvm::StringRef m, std::optional<int64_t> *group,
                          std::optional<bool> *sym) {
  if (m == "sym")
    return *sym = true, true;
  if (m == "asym")
    return *sym = false, true;
  if (m == "gchannel" || m == "per-channel" || m == "channel")
    return *group = -1, true;
  if (m.consume_front("g")) {
    int64_t g;
    if (m.getAsInteger(10, g))
      return false;
    *group = g;
    return true;
  }
  return false;
}

bool parseFormat(const std::string &name, int64_t groupSize, bool symmetric, Format *format,
                 std::string *error) {
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(name).trim().split(parts, ':');
  llvm::StringRef base = parts.empty() ? "" : parts[0].trim();
  std::optional<int64_t> group;
  std::optional<bool> sym;
  for (size_t i = 1; i < parts.size(); ++i)
    if (!parseModifier(parts[i].trim(), &group, &sym)) {
      *error = "weight format '" + name + "': unknown modifier '" + parts[i].trim().str() +
               "' (expected gN, gchannel, sym or asym)";
      return false;
    }

  Format f;
  if (base.starts_with("int")) {
    unsigned bits;
    if (base.drop_front(3).getAsInteger(10, bits) || bits < 2 || bits > 8) {
      *error = "weight format '" + name + "': int formats have 2..8 bits (int2 .. int8)";
      return false;
    }
    f.kind = qllm::ElementKind::Int;
    f.bits = bits;
    f.groupSize = group.value_or(groupSize);
    f.symmetric = sym.value_or(symmetric);
  } else if (base == "nf4") {
    f.kind = qllm::ElementKind::NF4;
    f.bits = 4;
    f.symmetric = true;
    if (sym && !*sym) {
      *error = "weight format '" + name + "': nf4 is symmetric (absmax-scaled blocks)";
      return false;
    }
    // The int default (128) means "not chosen": NF4's own default is 64.
    f.groupSize = group ? *group : (groupSize == kDefaultGroupSize ? kNF4DefaultBlock : groupSize);
    if (f.groupSize == -1) {
      *error = "weight format '" + name +
               "': nf4 needs blocks (a positive group size, default 64), not per-channel";
      return false;
    }
  } else if (base == "fp8" || base == "fp8_e4m3") {
    f.kind = qllm::ElementKind::FP8E4M3;
    f.bits = 8;
    f.symmetric = true;
    if (sym && !*sym) {
      *error = "weight format '" + name + "': fp8_e4m3 is symmetric (per-channel scales)";
      return false;
    }
    int64_t g = group ? *group : (groupSize == kDefaultGroupSize ? -1 : groupSize);
    if (g != -1) {
      *error = "weight format '" + name + "': fp8_e4m3 uses per-channel scales; group size " +
               std::to_string(g) + " is not supported (use -1 or leave it unset)";
      return false;
    }
    f.groupSize = -1;
  } else {
    *error = "unknown weight format '" + name + "' (expected int2..int8, nf4 or fp8)";
    return false;
  }
  if (f.groupSize == 0 || f.groupSize < -1) {
    *error = "weight format '" + name + "': group size must be -1 (per channel) or positive, got " +
             std::to_string(f.groupSize);
    return false;
  }
  *format = f;
  return true;
}

qllm::QuantAttr toAttr(mlir::MLIRContext *ctx, const Format &format) {
  mlir::Builder b(ctx);
  mlir::Type scaleType = format.scaleDType() == DType::F16 ? mlir::Type(b.getF16Type())
                                                           : mlir::Type(b.getF32Type());
  mlir::Type zeroType;
  if (format.kind == qllm::ElementKind::Int && !format.symmetric)
    zeroType = mlir::IntegerType::get(ctx, 8, mlir::IntegerType::Unsigned);
  return qllm::QuantAttr::get(ctx, format.kind, format.bits, format.groupSize, format.symmetric,
                              scaleType, zeroType, b.getStringAttr(kPackedLayout));
}

Format fromAttr(qllm::QuantAttr attr) {
  Format f;
  f.kind = attr.getKind();
  f.bits = attr.getBits();
  f.groupSize = attr.getGroupSize();
  f.symmetric = attr.getSymmetric();
  return f;
}

} // namespace qopt::quant
