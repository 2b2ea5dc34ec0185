#!/usr/bin/env bash
# Builds the safetensors fuzzer with clang-14 + libFuzzer + ASan/UBSan and
# runs it for a bounded time on a seed corpus made here. Fails on any crash
# or sanitizer report; exits 77 (skip) when clang-14 or libFuzzer is absent.
#   run_fuzz_safetensors.sh SOURCE_ROOT WORK_DIR [SECONDS]
set -u
src=${1:?source root}
work=${2:?work dir}
secs=${3:-20}
cxx=${QOPT_FUZZ_CXX:-clang++-14}

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "SKIP: $cxx not found (install clang-14 and libclang-rt-14-dev)"; exit 77
fi
rm -rf "$work"; mkdir -p "$work/corpus" "$work/crashes"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}' \
  > "$work/probe.cpp"
if ! "$cxx" -fsanitize=fuzzer "$work/probe.cpp" -o "$work/probe" 2>/dev/null; then
  echo "SKIP: $cxx cannot link -fsanitize=fuzzer (libclang-rt-14-dev missing?)"; exit 77
fi

# The parser needs no LLVM: just it, the weight store and the target.
"$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$src/include" -I"$src/runtime/include" \
  "$src/fuzz/safetensors/fuzz_safetensors.cpp" \
  "$src/lib/Import/HF/SafeTensors.cpp" \
  "$src/lib/Weights/WeightStore.cpp" \
  -o "$work/fuzz_safetensors" || { echo "FAIL: fuzzer did not build"; exit 1; }

# Seeds: a valid file with every dtype, metadata and odd shapes, plus
# mutations along the lines of the known loader bugs.
python3 - "$work/corpus" <<'PY' || { echo "FAIL: could not write the seed corpus"; exit 1; }
import json, struct, sys, os
out = sys.argv[1]
def st(header, data=b"", length=None, pad=True):
    h = json.dumps(header, separators=(",", ":")).encode() if not isinstance(header, bytes) else header
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if length is None else length) + h + data
sizes = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1}
hdr, off = {"__metadata__": {"format": "pt"}}, 0
for i, (dt, sz) in enumerate(sizes.items()):
    shape = [[2, 3], [], [0, 5], [7], [1, 1, 3]][i % 5]
    n = sz
    for d in shape: n *= d
    hdr["t%d" % i] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
    off += n
data = bytes(range(256)) * (off // 256 + 1)
seeds = {
    "valid": st(hdr, data[:off]),
    "empty": st({}),
    "huge_len": st(hdr, data[:off], length=1 << 62),
    "short_len": st(hdr, data[:off], length=16),
    "neg_dim": st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "wrap": st({"a": {"dtype": "F32", "shape": [1 << 62], "data_offsets": [0, 0]}}),
    "past_end": st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
    "reversed": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8),
    "dup": st(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
    "escapes": st(b'{"\\u00e9\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[{"y":null}]}}', b"\1"),
    "deep": st(b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"),
}
for k, v in seeds.items():
    with open(os.path.join(out, k), "wb") as f:
        f.write(v)
PY

cd "$work"
./fuzz_safetensors -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict="$src/fuzz/safetensors/safetensors.dict" -artifact_prefix="$work/crashes/" \
  -print_final_stats=1 corpus > fuzz.log 2>&1
rc=$?
tail -n 25 fuzz.log
if [ $rc -ne 0 ] || ls crashes/* >/dev/null 2>&1; then
  echo "FAIL: the fuzzer found a crash (rc=$rc); inputs in $work/crashes"; exit 1
fi
echo "PASS: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' fuzz.log)"
