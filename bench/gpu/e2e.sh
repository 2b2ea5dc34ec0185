#!/usr/bin/env bash
# The end-to-end device check of the CUDA model executor (docs/cuda.md,
# "Model executor"), on the GPU machine, over the gpu-e2e/ bundle that
# bench/gpu/prepare_e2e.sh made and the device call carried:
#  1. qrun_cuda_test.py --bundle: bf16 sm90 artifact -> reference.json's
#     greedy ids; int4 artifact -> perplexity within 0.5% of qopt -eval-ppl;
#  2. decode speed: one request of 256 tokens, then 64 concurrent requests
#     (qrun's own TTFT / ITL / tokens-per-second lines);
#  3. Llama-3-8B INT4 decode: synth_gpu_artifact.py writes the ~5 GB artifact
#     with random weights to /tmp, decode_bench times decode steps at batch
#     1..64 (JSON lines, also in $OUT/decode.jsonl).
# Every step has a timeout; exit status 1 when a check fails.
#   bench/gpu/e2e.sh [BUNDLE]      # default gpu-e2e
set -u
cd "$(dirname "$0")/../.."
B=${1:-gpu-e2e}
if [ ! -d "$B" ]; then
  echo "e2e: no $B/ (run bench/gpu/prepare_e2e.sh on the build machine and carry it)"
  exit 0
fi
export LD_LIBRARY_PATH="$PWD/$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
QRUN=$B/bin/qrun
if ! "$QRUN" --help >/dev/null 2>&1; then
  echo "e2e: the prebuilt qrun does not start here:"
  ldd "$QRUN" 2>&1 | grep -i "not found\|version" | head
  exit 1
fi
rc=0
echo "== e2e: correctness (qrun --device cuda vs reference.json and qopt -eval-ppl)"
timeout --kill-after=10 300 python3 test/Tools/qrun_cuda_test.py --qrun "$QRUN" --bundle "$B" || rc=1

echo "== e2e: decode, one request (int4)"
timeout --kill-after=10 60 "$QRUN" "$B/austen-int4.sm90.qopt" --device cuda \
  --token-ids 809,653,260,496 -n 256 --ignore-eos --print-ids 2>&1 >/dev/null | tail -3 || rc=1

echo "== e2e: 64 concurrent requests (int4, 128 tokens each)"
python3 - "$B/prompts.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(64):
        ids = [(37 * i + 11 * j + 5) % 4000 + 16 for j in range(8 + i % 24)]
        f.write(json.dumps({"prompt_ids": ids, "max_tokens": 128, "ignore_eos": True}) + "\n")
PY
timeout --kill-after=10 120 "$QRUN" "$B/austen-int4.sm90.qopt" --device cuda \
  --prompts "$B/prompts.jsonl" --concurrency 64 2>&1 >/dev/null | tail -6 || rc=1

echo "== e2e: Llama-3-8B-shaped INT4 (random weights) decode steps"
ART8=${TMPDIR:-/tmp}/llama3-8b-int4.sm90.qopt
if timeout --kill-after=10 180 python3 bench/gpu/synth_gpu_artifact.py --preset llama3-8b --out "$ART8"; then
  timeout --kill-after=10 240 "$B/bin/decode_bench" "$ART8" --batches 1,8,16,32,64 --context 1024 \
    | tee "${OUT:-$B}/decode.jsonl" || rc=1
else
  rc=1
fi
rm -rf "$ART8"
exit $rc
