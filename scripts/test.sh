#!/usr/bin/env bash
# Runs every test: installs what is missing and builds (scripts/setup.sh),
# then ctest (lit IR tests, unit tests, comparisons against HF tokenizers,
# onnxruntime and transformers' ground truth, bounded fuzzing). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 "$@"
