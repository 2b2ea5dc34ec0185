//===- Pipeline.h - the quantization pipeline the driver runs -*- C++ -*-===//
//
// `qopt -wquant=... -method=...` maps its flags onto QuantPipelineOptions
// and runs buildQuantizationPipeline; every pass it adds is a registered
// qopt-opt pass with the same option names, so any qopt run can be
// reproduced step by step with `qopt-opt --pass-pipeline=...`.
//
//===----------------------------------------------------------------------===//
#ifndef QOPT_QUANT_PIPELINE_H
#define QOPT_QUANT_PIPELINE_H

#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qopt::quant {

struct QuantPipelineOptions {
  /// rtn | gptq | awq | smoothquant.
  std::string method = "rtn";
  /// int2..int8 | nf4 | fp8 | w8a8 (= SmoothQuant W8A8); empty: weights
  /// stay float (a pipeline may still quantize the KV cache).
  std::string wquant;
  int64_t groupSize = 128;
  bool symmetric = false;
  std::vector<std::string> overrides;
  bool quantizeEmbeddings = false;
  bool quantizeLmHead = false;

  /// Calibration (gptq, awq, smoothquant, kv cache): one text file.
  std::string calib;
  std::string tokenizer;
  int64_t calibSamples = 128;
  int64_t calibSeqlen = 512;
  uint64_t seed = 0;
  int threads = 0;

  double gptqDamp = 0.01;
  int64_t gptqBlockSize = 128;
  bool actOrder = false;
  int64_t awqGrid = 20;
  bool awqClip = true;
  double smoothquantAlpha = 0.5;
  std::string actQuant = "per-token";
  /// "" | int8 | fp8.
  std::string kvCache;
};

/// Checks that the options describe a pipeline that exists: a known
/// method, a format it can produce, sane group sizes and numbers, and a
/// calibration file named where one is needed (its contents are the
/// caller's to check). False with a one-line *error.
bool validateQuantPipelineOptions(const QuantPipelineOptions &options, std::string *error);

/// True when the options ask for any pass at all.
bool quantPipelineIsEmpty(const QuantPipelineOptions &options);

/// True when the method needs calibration data.
bool quantPipelineNeedsCalibration(const QuantPipelineOptions &options);

/// Adds the passes: the weight method (qopt-quantize-rtn, qopt-gptq,
/// qopt-awq or qopt-smoothquant), then qopt-kv-cache-quant if asked (its
/// scales are calibrated on the already-quantized weights). Call
/// validateQuantPipelineOptions first.
void buildQuantizationPipeline(mlir::OpPassManager &pm, const QuantPipelineOptions &options);

/// Registers "qopt-quantize" (the same pipeline, options as pass options)
/// for qopt-opt.
void registerQuantizationPipeline();

} // namespace qopt::quant

#endif
