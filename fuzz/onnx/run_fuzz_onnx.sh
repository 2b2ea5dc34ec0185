#!/bin/sh
# Builds the ONNX loader fuzzer with clang (libFuzzer + AddressSanitizer)
# and runs it for 20 seconds from a seed corpus of generated graphs.
# Usage: run_fuzz_onnx.sh OUT_DIR [GRAPHS_DIR]. Exits 77 (skip) without a
# clang that supports -fsanitize=fuzzer.
set -eu
out=$1
graphs=${2:-}
src=$(cd "$(dirname "$0")/../.." && pwd)
CXX=""
for c in clang++-14 clang++; do
  if command -v "$c" >/dev/null 2>&1; then CXX=$c; break; fi
done
if [ -z "$CXX" ]; then
  echo "SKIP: no clang++ (libFuzzer needs clang)"
  exit 77
fi
mkdir -p "$out"
probe="$out/probe.cpp"
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}\n' > "$probe"
if ! "$CXX" -fsanitize=fuzzer,address "$probe" -o "$out/probe" >/dev/null 2>&1; then
  echo "SKIP: $CXX cannot build libFuzzer targets"
  exit 77
fi
"$CXX" -std=c++17 -O1 -g -fsanitize=fuzzer,address -DONNX_ML=1 -DONNX_NAMESPACE=onnx \
  -I"$src/include" -I"$src/runtime/include" \
  "$src/fuzz/onnx/fuzz_onnx.cpp" "$src/lib/Import/ONNX/ONNXLoader.cpp" "$src/lib/Weights/WeightStore.cpp" \
  -lonnx_proto -lprotobuf -o "$out/fuzz_onnx"
seeds="$out/seeds"
work="$out/corpus"
rm -rf "$work" && mkdir -p "$seeds" "$work"
if [ -n "$graphs" ] && [ -d "$graphs" ]; then
  for f in "$graphs"/*/model.onnx; do
    [ -f "$f" ] && cp "$f" "$seeds/$(basename "$(dirname "$f")").onnx"
  done
fi
# Protobuf's own allocations are not instrumented; leaks there are its
# static default instances, so leak checking stays on for our code only.
"$out/fuzz_onnx" -max_total_time=20 -rss_limit_mb=2048 -timeout=10 -max_len=1048576 \
  -print_final_stats=1 "$work" "$seeds"
