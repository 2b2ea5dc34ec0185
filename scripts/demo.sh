#!/usr/bin/env bash
# The main job, end to end: set up, import a real Llama-family model, show its
# QLLM IR, measure its perplexity, quantize it with GPTQ and measure what that
# cost, compile the deployable artifact (packed weights + kernels generated
# for its shapes) and run it with qrun, and continue a prompt. Uses
# ../shared/models/austen-llama-7m when present, otherwise a model that
# qopt-synth writes (random weights: its perplexity is meaningless, the
# pipeline is the same).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
QOPT=$BUILD_DIR/bin/qopt
SHARED=../shared
if [ -d "$SHARED/models/austen-llama-7m" ]; then
  MODEL=$SHARED/models/austen-llama-7m
  TEXT=$SHARED/data/text/austen/persuasion.txt
  # Calibrate on the five novels the evaluation text is not.
  A=$SHARED/data/text/austen
  CALIB=$A/emma.txt,$A/mansfieldpark.txt,$A/northangerabbey.txt,$A/prideprejudice.txt,$A/sensesensibility.txt
else
  MODEL=$BUILD_DIR/demo-model
  "$BUILD_DIR/bin/qopt-synth" -preset=tiny -seed=0 -o "$MODEL"
  TEXT=$BUILD_DIR/demo-text.txt
  # Any text will do for a random model; the project's own docs are at hand.
  cat README.md docs/*.md > "$TEXT"
  CALIB=$TEXT
fi
IR=$BUILD_DIR/demo.mlir
"$QOPT" "$MODEL" -emit=mlir -o "$IR"
echo "== $MODEL imported: $IR holds the QLLM IR; its $(grep -c 'qllm.param' "$IR") weights"
echo "   are named tensors of the weight store. The embedding and the first layer:"
grep -v 'qllm.param' "$IR" | sed -n '/func.func/,/qllm.add/p' | sed -n '1,16p'
echo "== perplexity on $TEXT"
"$QOPT" "$MODEL" -eval-ppl="$TEXT"
echo "== GPTQ int4 g128, calibrated layer by layer; quality against the float model"
"$QOPT" "$MODEL" -wquant=int4 -method=gptq -group-size=128 -calib="$CALIB" -calib-samples=32 \
  -eval-ppl="$TEXT" -report="$BUILD_DIR/demo-report.json" -o "$BUILD_DIR/demo.qopt"
echo "   (per-weight formats, bits and errors: $BUILD_DIR/demo-report.json)"
echo "== the deployable artifact $BUILD_DIR/demo.qopt (the same GPTQ int4 model), run by qrun"
ls "$BUILD_DIR/demo.qopt" "$BUILD_DIR/demo.qopt/kernels" | sed 's/^/   /'
"$BUILD_DIR/bin/qrun" "$BUILD_DIR/demo.qopt" --perplexity "$TEXT"
"$BUILD_DIR/bin/qrun" "$BUILD_DIR/demo.qopt" -p "Once upon a time, there was a little" -n 40
echo "== greedy continuation by the float model (qopt's reference executor)"
"$QOPT" "$MODEL" -prompt="Once upon a time, there was a little" -max-new-tokens=40
