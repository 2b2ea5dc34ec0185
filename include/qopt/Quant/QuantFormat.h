//===- QuantFormat.h - weight formats the passes produce -------*- C++ -*-===//
//
// One name per concept: the CLI's -wquant/-group-size, the pass options and
// the IR's #qllm.quant attribute all describe the same Format.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_QUANTFORMAT_H
#define QOPT_QUANT_QUANTFORMAT_H

#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Weights/WeightStore.h"

#include <cstdint>
#include <string>

namespace qopt::quant {

/// The -group-size / pass option default; nf4 and fp8 read it as "not
/// chosen" and use their own (64-element blocks, per-channel).
constexpr int64_t kDefaultGroupSize = 128;
/// bitsandbytes' NF4 block size.
constexpr int64_t kNF4DefaultBlock = 64;
/// NF4 absmax values share one fp32 (offset, scale) pair per this many
/// blocks (bitsandbytes' double quantization uses 256 too).
constexpr int64_t kNF4AbsmaxChunk = 256;
/// The one packed layout the reference quantizer writes: codes LSB-first
/// along each row, each row padded to whole bytes.
constexpr const char *kPackedLayout = "packed_lsb";

struct Format {
  qllm::ElementKind kind = qllm::ElementKind::Int;
  unsigned bits = 4;
  /// Elements of one input row sharing a scale; -1 = per output channel.
  /// A group size that does not divide K leaves a short last group.
  int64_t groupSize = 128;
  bool symmetric = false;

  /// Groups per row for `cols` input features.
  int64_t numGroups(int64_t cols) const;
  /// The group length along a row of `cols` (cols when per-channel).
  int64_t effectiveGroup(int64_t cols) const;
  /// Columns of group g (the last one may be short).
  int64_t groupBegin(int64_t g, int64_t cols) const;
  int64_t groupEnd(int64_t g, int64_t cols) const;
  /// Bits per weight of a [rows, cols] matrix, codes + fp16 scales + zeros
  /// (+ NF4's double-quantized absmax), as the report states it.
  double bitsPerWeight(int64_t rows, int64_t cols) const;
  /// "int4 g128 asym", "nf4 g64", "fp8_e4m3 per-channel".
  std::string str() const;
  /// The spelling parseFormat reads back: "int4:g128:asym", "nf4:g64", "fp8".
  std::string spec() const;

  /// Bytes of one packed row of codes (`<name>.qweight` row).
  int64_t packedRowBytes(int64_t cols) const;
  /// Every byte stored for a [rows, cols] weight (what bitsPerWeight counts).
  int64_t storedBytes(int64_t rows, int64_t cols) const;
  /// NF4: chunks of kNF4AbsmaxChunk blocks (row-major block order).
  int64_t absmaxChunks(int64_t rows, int64_t cols) const;
  /// Element type of `<name>.scales`: fp16 for int, fp32 for fp8 (and for
  /// NF4's second-level `<name>.absmax_scale`).
  DType scaleDType() const;
};

/// Parses a -wquant name: int2..int8, nf4, fp8 (= fp8_e4m3). `groupSize`
/// and `symmetric` apply to int; nf4 uses blocks of `groupSize` (64 when
/// the caller passes its default), fp8 is per-channel symmetric. False with
/// *error on a name or combination that makes no sense.
/// The name may carry ':'-separated modifiers that win over the arguments:
/// `gN`, `gchannel` (= per channel), `sym`, `asym` ("int3:g32", "nf4:g128").
bool parseFormat(const std::string &name, int64_t groupSize, bool symmetric, Format *format,
                 std::string *error);

/// The IR attribute of a format: fp16 scales, ui8 integer zero points
/// (asymmetric int), packed layout "packed_lsb" (codes packed LSB-first,
/// each row padded to a byte).
qllm::QuantAttr toAttr(mlir::MLIRContext *ctx, const Format &format);
Format fromAttr(qllm::QuantAttr attr);

} // namespace qopt::quant

#endif
