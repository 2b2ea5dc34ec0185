#!/usr/bin/env bash
# One device call for the whole GPU check. The prebuilt binaries
# (prepare.sh: build-gpu/bin, third_party-gpu) and the end-to-end bundle
# (prepare_e2e.sh: gpu-e2e, artifacts + qrun) are ~115 MB together, over the
# device tool's 64 MiB carry limit; compressed (xz) they are ~36 MB. This
# builds both, packs them into the ignored gpu-bundle/bundle.tar.xz and
# prints the `run` call; on the device, device_check.sh unpacks and runs
# run.sh (which runs e2e.sh too).
#   bench/gpu/bundle.sh        # here, on the CPU machine (~3-5 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
bench/gpu/prepare.sh
bench/gpu/prepare_e2e.sh
grep -qx '/gpu-bundle/' .git/info/exclude 2>/dev/null || echo '/gpu-bundle/' >> .git/info/exclude
mkdir -p gpu-bundle
tar -cJf gpu-bundle/bundle.tar.xz build-gpu/bin third_party-gpu gpu-e2e
du -h gpu-bundle/bundle.tar.xz | sed 's/^/bundle.sh: /'
echo 'bundle.sh: run(command="bench/gpu/device_check.sh", carry=["gpu-bundle"], timeout_s=600)'
