#!/usr/bin/env bash
# THE device check of the CUDA backend (docs/cuda.md): on a GPU machine, in
# under 5 minutes, never hanging (a timeout on every step):
#  1. nvidia-smi: which card, driver, clocks;
#  2. the prebuilt binaries (build-gpu/bin from prepare.sh, carried); if they
#     do not start there (other system libraries), a rebuild of runtime/cuda
#     standalone for that card only, with the carried GoogleTest sources;
#  3. every CUDA test binary (gtest JSON);
#  4. the benchmarks (gemm_bench, attention_bench if built) and the torch
#     baselines (torch_baselines.py, torch_attention.py if present);
#  4b. bench/gpu/e2e.sh (qrun --device cuda end to end) when gpu-e2e/ from
#     prepare_e2e.sh was carried (e2e.log);
#  5. report.py: the attention and 8B decode bars, then ONE table, printed
#     last, and $OUT/gpu-results.json.
# Files back in $OUT (at most 8): gpu-results.json, bench.jsonl, tests.log,
# build.log (when rebuilt).
#   bench/gpu/run.sh            # on the device
#   bench/gpu/run.sh --dry-run  # prints the steps only (tested on CPU machines)
set -u
cd "$(dirname "$0")/../.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qopt-gpu.XXXXXX")
RES=${OUT:-$WORK/out}
[ $DRY = 1 ] && RES=$WORK/out
mkdir -p "$RES"
exec 3>&1 # the console, for messages from steps whose output goes to files

step() { echo "== $*"; }
# run SECONDS CMD...: runs with a timeout, or only prints it on --dry-run.
run() {
  local t=$1
  shift
  if [ $DRY = 1 ]; then
    echo "   would run (timeout ${t}s): $*" >&3
    return 0
  fi
  timeout --kill-after=10 "$t" "$@"
  local rc=$?
  [ $rc = 124 ] && echo "   TIMED OUT after ${t}s: $*" >&3
  return $rc
}

step "device"
run 20 nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader

# The prebuilt binaries link libcudart / libcublasLt dynamically.
[ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
BIN=build-gpu/bin
step "binaries: try the prebuilt ones in $BIN"
if [ $DRY = 1 ] || run 30 "$BIN/qcuda_layout_test" --gtest_brief=1 >/dev/null 2>&1; then
  echo "   prebuilt binaries start"
else
  echo "   prebuilt binaries missing or do not start here: rebuilding"
  CAP=$(timeout 20 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  case "$CAP" in 90) ARCH=90a ;; "") ARCH="80;89;90a" ;; *) ARCH=$CAP ;; esac
  GTEST=third_party-gpu/googletest
  [ -d "$GTEST" ] || GTEST=/usr/src/googletest
  BIN=$WORK/build/bin
  run 120 cmake -S runtime/cuda -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DQOPT_GTEST_SOURCE_DIR=$PWD/$GTEST" >"$RES/build.log" 2>&1 &&
    run 300 ninja -C "$WORK/build" -j16 >>"$RES/build.log" 2>&1 ||
    { echo "   BUILD FAILED: see build.log"; tail -20 "$RES/build.log"; }
fi

step "tests"
GTESTS=()
TESTS=("$BIN"/*_test)
[ $DRY = 1 ] && TESTS=("$BIN/qcuda_layout_test" "$BIN/qcuda_gemm_test")
for t in "${TESTS[@]}"; do
  [ -x "$t" ] || [ $DRY = 1 ] || continue
  name=$(basename "$t")
  run 120 "$t" --gtest_output="json:$WORK/$name.json" >>"$WORK/tests.log" 2>&1
  rc=$?
  [ $DRY = 1 ] || echo "   $name: exit $rc"
  GTESTS+=(--gtest "$WORK/$name.json")
done
[ $DRY = 1 ] || grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$WORK/tests.log" | sort | uniq -c | head -40

step "benchmarks"
: >"$WORK/bench.jsonl"
for b in gemm_bench attention_bench; do
  [ -x "$BIN/$b" ] || [ $DRY = 1 ] || continue
  run 150 "$BIN/$b" >>"$WORK/bench.jsonl" 2>>"$WORK/tests.log" || echo "   $b failed: exit $?"
done
run 150 env PYTHONUNBUFFERED=1 python3 bench/gpu/torch_baselines.py >>"$WORK/bench.jsonl" 2>>"$WORK/tests.log" ||
  echo "   torch_baselines.py failed"
if [ -f bench/gpu/torch_attention.py ]; then
  run 120 env PYTHONUNBUFFERED=1 python3 bench/gpu/torch_attention.py >>"$WORK/bench.jsonl" 2>>"$WORK/tests.log" ||
    echo "   torch_attention.py failed"
fi

# End to end: qrun --device cuda on the carried gpu-e2e/ bundle (prepare_e2e.sh).
if [ -d gpu-e2e ] || [ $DRY = 1 ]; then
  step "end to end (bench/gpu/e2e.sh)"
  run 300 env OUT="$RES" bench/gpu/e2e.sh >"$RES/e2e.log" 2>&1; echo "   e2e.sh: exit $? (e2e.log)"; [ $DRY = 1 ] || tail -25 "$RES/e2e.log"
  # The 8B decode curve (decode_bench) joins the report.
  [ -f "$RES/decode.jsonl" ] && cat "$RES/decode.jsonl" >>"$WORK/bench.jsonl"
fi

cp "$WORK/bench.jsonl" "$RES/bench.jsonl" 2>/dev/null
[ -f "$WORK/tests.log" ] && cp "$WORK/tests.log" "$RES/tests.log"
step "report"
echo "   files: $RES"
run 60 python3 bench/gpu/report.py --bench "$WORK/bench.jsonl" "${GTESTS[@]}" --out "$RES/gpu-results.json"
