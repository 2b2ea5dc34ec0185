#!/usr/bin/env bash
# Prepares, on this (GPU-less) machine, the end-to-end device check of the
# CUDA model executor (bench/gpu/e2e.sh): the GPU machine has no LLVM/MLIR
# (no qopt) and no PCRE2 / nlohmann-json / ICU headers (no qrun build), so
#  1. qrun is built here with the CUDA backend for sm_90a, without ICU,
#     libstdc++/libgcc linked in, in build-gpu-e2e/;
#  2. qrun_cuda_test.py --make-bundle writes the austen-llama-7m artifacts
#     (bf16 and int4 g128, -target=sm90), the reference greedy ids and
#     qopt -eval-ppl's int4 perplexity into gpu-e2e/ (ignored);
#  3. qrun, its CUDA plugin, decode_bench and libpcre2-8 are copied next to them.
# Prints the carry entry at the end: gpu-e2e/ is about 30 MB, and with
# run.sh's carry (build-gpu/bin ~38 MB, third_party-gpu ~4 MB) the tree would
# pass the device tool's 64 MiB, so e2e.sh is its own device call (carry
# ["gpu-e2e"], command bench/gpu/e2e.sh) on the same warm machine. Needs
# QOPT (default build/bin/qopt, what scripts/setup.sh builds) and ../shared.
#   bench/gpu/prepare_e2e.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
QOPT=${QOPT:-build/bin/qopt}
SHARED=${SHARED:-../shared}
[ -x "$QOPT" ] || { echo "prepare_e2e.sh: $QOPT is missing (build qopt first)" >&2; exit 1; }

# The full tree's configure needs MLIR even though only qrun is built.
cmake -S . -B build-gpu-e2e -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DMLIR_DIR="${MLIR_DIR:-/usr/lib/llvm-19/lib/cmake/mlir}" \
  -DLLVM_DIR="${LLVM_DIR:-/usr/lib/llvm-19/lib/cmake/llvm}" \
  -DCMAKE_CUDA_COMPILER="${CUDACXX:-/usr/local/cuda/bin/nvcc}" -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DQOPT_RUNTIME_USE_ICU=OFF "-DCMAKE_EXE_LINKER_FLAGS=-static-libstdc++ -static-libgcc" \
  "-DCMAKE_MODULE_LINKER_FLAGS=-static-libstdc++ -static-libgcc" >/dev/null
ninja -C build-gpu-e2e -j"${JOBS:-2}" qrun qopt_cuda_backend decode_bench

rm -rf gpu-e2e
mkdir -p gpu-e2e/bin gpu-e2e/lib
python3 test/Tools/qrun_cuda_test.py --make-bundle gpu-e2e --qopt "$QOPT" \
  --qrun build-gpu-e2e/bin/qrun --shared "$SHARED"
# qrun loads the CUDA executor from the plugin beside it (CudaBackend.h).
cp build-gpu-e2e/bin/qrun build-gpu-e2e/bin/libqopt_cuda_backend.so build-gpu-e2e/bin/decode_bench \
  gpu-e2e/bin/
cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 / {print $NF; exit}')" gpu-e2e/lib/
grep -qx '/gpu-e2e/' .git/info/exclude 2>/dev/null || echo '/gpu-e2e/' >> .git/info/exclude
du -sh gpu-e2e | sed 's/^/prepare_e2e.sh: /'
echo 'prepare_e2e.sh: device call: carry = ["gpu-e2e"], command = bench/gpu/e2e.sh'
