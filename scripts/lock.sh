#!/usr/bin/env bash
# Re-resolve the lock files from setup.cfg's ranges (pip-tools, hashes for every file):
#   requirements/runtime.txt   what `scripts/setup.sh` and the service installer install
#   requirements/dev.txt       runtime + [dev,train]: `scripts/setup.sh --dev` and CI
#   requirements/gpu.txt       runtime + [gpu] (TensorRT, pycuda, numba-cuda) for GPU stations
# Run it on purpose, after scripts/check_newest.sh has shown the newest versions pass:
#   scripts/lock.sh            (about 4 minutes; needs only PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
tools=/tmp/inspector-lock-tools
[[ -x $tools/bin/pip-compile ]] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q pip-tools==7.7.0; }
compile() {  # OUT [--extra X ...]
    local out=$1; shift
    echo ">> $out"
    "$tools/bin/pip-compile" -q --generate-hashes --strip-extras --allow-unsafe \
        --no-emit-find-links --no-emit-index-url --no-header "$@" \
        -o "$out" setup.cfg requirements/build.in 2>&1 | grep -v "^WARNING: Location" || true
    [[ -s $out ]] || { echo "lock failed: $out" >&2; return 1; }
}
compile requirements/runtime.txt
compile requirements/dev.txt --extra dev --extra train
# The gpu extra resolves only where its wheels exist for this platform (pycuda builds
# from source against a CUDA toolkit); a failure here leaves the other locks valid.
compile requirements/gpu.txt --extra gpu || echo "gpu lock not resolved on this machine" >&2
