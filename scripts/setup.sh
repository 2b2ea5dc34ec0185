#!/usr/bin/env bash
# Installs what qopt needs on a fresh Debian 12 machine (idempotent), then
# configures and builds the project. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config python3 python3-pip
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools
  libprotobuf-dev protobuf-compiler libonnx-dev
  nlohmann-json3-dev libfmt-dev libpcre2-dev libicu-dev
  libopenblas-dev liblapack-dev liblapacke-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python side: only the tests' independent references (HF tokenizers,
# onnx for building test graphs, onnxruntime, numpy, lit).
PY_PACKAGES=(numpy onnx onnxruntime tokenizers safetensors lit ml_dtypes)
need_py=0
for p in "${PY_PACKAGES[@]}"; do
  python3 -c "import importlib,sys; importlib.import_module(sys.argv[1])" "$p" 2>/dev/null || need_py=1
done
if [ $need_py -eq 1 ]; then
  echo "setup: installing python packages ${PY_PACKAGES[*]}"
  python3 -m pip install -q "${PY_PACKAGES[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-19/lib/cmake/mlir -DLLVM_DIR=/usr/lib/llvm-19/lib/cmake/llvm
fi
cmake --build "$BUILD_DIR"
