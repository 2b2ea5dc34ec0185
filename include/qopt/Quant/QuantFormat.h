//===- QuantFormat.h - weight formats the passes produce -------*- C++ -*-===//
//
// One name per concept: the CLI's -wquant/-group-size, the pass options and
// the IR's #qllm.quant attribute all describe the same Format.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_QUANTFORMAT_H
#define QOPT_QUANT_QUANTFORMAT_H

#include "qopt/Dialect/QLLM/QLLMOps.h"

#include <cstdint>
#include <string>

namespace qopt::quant {

struct Format {
  qllm::ElementKind kind = qllm::ElementKind::Int;
  unsigned bits = 4;
  /// Elements of one input row sharing a scale; -1 = per output channel.
  /// A group size that does not divide K leaves a short last group.
  int64_t groupSize = 128;
  bool symmetric = false;

  /// Groups per row for `cols` input features.
  int64_t numGroups(int64_t cols) const;
  /// Columns of group g (the last one may be short).
  int64_t groupBegin(int64_t g, int64_t cols) const;
  int64_t groupEnd(int64_t g, int64_t cols) const;
  /// Bits per weight of a [rows, cols] matrix, codes + fp16 scales + zeros
  /// (+ NF4's double-quantized absmax), as the report states it.
  double bitsPerWeight(int64_t rows, int64_t cols) const;
  /// "int4 g128 asym", "nf4 g64", "fp8_e4m3 per-channel".
  std::string str() const;
};

/// Parses a -wquant name: int2..int8, nf4, fp8 (= fp8_e4m3). `groupSize`
/// and `symmetric` apply to int; nf4 uses blocks of `groupSize` (64 when
/// the caller passes its default), fp8 is per-channel symmetric. False with
/// *error on a name or combination that makes no sense.
bool parseFormat(const std::string &name, int64_t groupSize, bool symmetric, Format *format,
                 std::string *error);

/// The IR attribute of a format: fp16 scales, ui8 integer zero points
/// (asymmetric int), packed layout "packed_lsb" (codes packed LSB-first,
/// each row padded to a byte).
qllm::QuantAttr toAttr(mlir::MLIRContext *ctx, const Format &format);
Format fromAttr(qllm::QuantAttr attr);

} // namespace qopt::quant

#endif
