#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, what the device check (run.sh) runs:
# runtime/cuda standalone with GoogleTest from Debian's /usr/src/googletest,
# copied into the ignored third_party-gpu/ so it can travel with the tree.
# Prints the `carry` list for the device tool's `run` at the end.
#   bench/gpu/prepare.sh            # -> build-gpu/bin/{qcuda_*_test,gemm_bench,...}
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -d third_party-gpu/googletest ]; then
  if [ ! -d /usr/src/googletest ]; then
    echo "prepare.sh: /usr/src/googletest is missing (apt-get install googletest)" >&2
    exit 1
  fi
  mkdir -p third_party-gpu
  cp -r /usr/src/googletest third_party-gpu/googletest
fi
# Ignored locally (not a tracked file): build-gpu/ is already covered by /build*/.
grep -qx '/third_party-gpu/' .git/info/exclude 2>/dev/null || echo '/third_party-gpu/' >> .git/info/exclude

cmake -S runtime/cuda -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQOPT_GTEST_SOURCE_DIR="$PWD/third_party-gpu/googletest" >/dev/null
ninja -C build-gpu -j"${JOBS:-2}"
# The bulky intermediates do not travel: only the binaries are needed there.
du -sh build-gpu/bin third_party-gpu | sed 's/^/prepare.sh: /'
echo 'prepare.sh: carry = ["build-gpu/bin", "third_party-gpu"]'
