#!/usr/bin/env bash
# rtn_1b.sh - RTN of a synthesized 1B-parameter bf16 Llama: time and peak RSS.
#
#   bench/quant/rtn_1b.sh [BUILD_DIR] [FORMAT...]
#
# Synthesizes the llama-3.2-1b preset once (random bf16 weights, 2.5 GB,
# into $QOPT_BENCH_DIR or /tmp/synth1b), then for each format (default:
# int4) runs `qopt MODEL -wquant=FORMAT` under /usr/bin/time -v and prints
# wall time and peak RSS next to the model's size. The goal (issue 3):
# under a minute on 2 cores, peak RSS under a third of the model's size.
# The RTN pass streams one weight at a time from the memory map; no
# executor is created (no -eval-ppl here).
set -euo pipefail
BUILD=${1:-$(dirname "$0")/../../build}
shift || true
FORMATS=("$@")
[ ${#FORMATS[@]} -eq 0 ] && FORMATS=(int4)
MODEL=${QOPT_BENCH_DIR:-/tmp/synth1b}
QOPT=$BUILD/bin/qopt
SYNTH=$BUILD/bin/qopt-synth
for tool in "$QOPT" "$SYNTH"; do
  [ -x "$tool" ] || { echo "rtn_1b.sh: $tool is not built" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "rtn_1b.sh: needs /usr/bin/time (GNU time)" >&2; exit 1; }
if [ ! -f "$MODEL/config.json" ]; then
  echo "synthesizing llama-3.2-1b into $MODEL ..." >&2
  "$SYNTH" -preset=llama-3.2-1b -o "$MODEL"
fi
size=$(du -cb "$MODEL"/*.safetensors | tail -1 | cut -f1)
echo "model: $MODEL, $(awk -v b="$size" 'BEGIN{printf "%.2f GB", b/1e9}') of safetensors"
for fmt in "${FORMATS[@]}"; do
  log=$(mktemp)
  /usr/bin/time -v "$QOPT" "$MODEL" -wquant="$fmt" 2> "$log" >/dev/null || { cat "$log"; exit 1; }
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
  awk -v f="$fmt" -v w="$wall" -v r="$rss" -v s="$size" 'BEGIN{
    printf "%-6s wall %s  peak RSS %.0f MB (%.1f%% of the model; goal < 33.3%%)\n",
           f, w, r/1024, 100*r*1024/s }'
  rm -f "$log"
done
