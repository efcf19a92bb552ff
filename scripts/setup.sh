#!/usr/bin/env bash
# Set up Inspector on a fresh Debian machine with Python 3.11.
#   scripts/setup.sh          runtime: Debian packages + .venv with inspector installed
#   scripts/setup.sh --dev    also the test tools (pytest, ruff, CUDA simulator/PTX compiler)
#                             and the training stack (torch CPU, EfficientNet-Lite0 weights)
# Every package comes from the lock (requirements/*.txt: exact versions with hashes, made by
# scripts/lock.sh), so every machine gets the same bits. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
lock=requirements/runtime.txt
if [[ "${1:-}" == "--dev" ]]; then
    extras="[dev,train]"
    lock=requirements/dev.txt
fi

# Debian packages: mosquitto (the local broker of the demo and the MQTT tests); for the
# tests also systemd (systemd-analyze verify/security), shellcheck (installer scripts) and
# chromium with its chromedriver (the station page's browser tests).
debs=(mosquitto mosquitto-clients)
[[ -n "$extras" ]] && debs+=(systemd shellcheck chromium chromium-driver)
missing=()
for d in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "ok installed" || missing+=("$d")
done
if (( ${#missing[@]} )); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo ">> installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [[ ! -x .venv/bin/python ]]; then
    echo ">> creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
echo ">> installing $lock and inspector${extras} into .venv"
quiet() { grep -v "^WARNING: Location" || true; }  # this machine's pip mirror notes
set -o pipefail
.venv/bin/python -m pip install -q --require-hashes --no-deps -r "$lock" 2>&1 | quiet
# The project itself, editable, with nothing more resolved: the lock is the whole set.
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | quiet
.venv/bin/python -c "import inspector, cv2, numba, onnxruntime, paho.mqtt" \
    || { echo "setup failed: inspector does not import" >&2; exit 1; }
echo ">> ready: .venv/bin/inspector --help"
