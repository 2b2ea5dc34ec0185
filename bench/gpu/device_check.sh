#!/usr/bin/env bash
# On the GPU machine: unpacks gpu-bundle/bundle.tar.xz (bundle.sh) into the
# tree and runs the device check (run.sh: tests, benchmarks, torch
# baselines, end to end, one table last; files in $OUT).
set -u
cd "$(dirname "$0")/../.."
if [ -f gpu-bundle/bundle.tar.xz ]; then
  timeout 60 tar -xJf gpu-bundle/bundle.tar.xz || echo "device_check.sh: unpacking the bundle failed"
else
  echo "device_check.sh: no gpu-bundle/bundle.tar.xz (run bench/gpu/bundle.sh here first); run.sh will rebuild"
fi
exec bench/gpu/run.sh "$@"
