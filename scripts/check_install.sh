#!/usr/bin/env bash
# Install Inspector as a line integrator would and run the installed copy from outside the
# checkout (CI runs this after the tests; about 3 minutes):
#   1. scripts/install-service.sh into a DESTDIR: venv from the lock, unit, config, demo recipe;
#      the installed `inspector` runs the installed config (state dir moved into the scratch
#      folder) on 10 synthetic parts: the prompt detector and the unknown branch must load
#      and NG parts must come out;
#   2. a plain non-editable `pip install` of the project into a fresh venv, then
#      `inspector demo` from an empty folder: demo recipe, calibration and models travel
#      with the package; and `inspector demo --ui`: the station page's templates and
#      scripts travel too (its login page and script are fetched while it runs).
# Usage: scripts/check_install.sh [--keep]   (--keep leaves the scratch folder for a look)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
work=$(mktemp -d /tmp/inspector-install.XXXXXX)
[[ "${1:-}" == "--keep" ]] || trap 'rm -rf "$work"' EXIT
fail() { echo "check_install: FAIL: $*" >&2; exit 1; }
say() { echo ">> check_install: $*"; }

say "1. install-service.sh into $work/root"
DESTDIR=$work/root PYTHON=$PY "$REPO/scripts/install-service.sh" --no-start >"$work/install.log" 2>&1 \
    || { cat "$work/install.log"; fail "install-service.sh"; }
venv=$work/root/opt/inspector/venv
etc=$work/root/etc/inspector
cd "$work"   # nothing below may read the checkout
"$venv/bin/inspector" --version | tee version.txt
grep -q MISSING version.txt && fail "a model artefact is missing in the installed package"
grep -q "^commit [0-9a-f]\{40\}" version.txt || fail "no commit in --version"
sed -e "s#state_dir: /var/lib/inspector#state_dir: $work/state#" \
    -e "s#rate_hz: 2}#rate_hz: 1, count: 10}#" "$etc/station.yaml" > "$etc/check.yaml"
grep -q "count: 10" "$etc/check.yaml" || fail "installed station.yaml has an unexpected camera line"
"$venv/bin/inspector" validate "$etc/check.yaml"
"$venv/bin/inspector" run --config "$etc/check.yaml" >run.log 2>&1 &
pid=$!
for _ in $(seq 300); do  # the service stops by itself at the camera's end of stream
    kill -0 $pid 2>/dev/null || break
    sleep 1
done
kill -TERM $pid 2>/dev/null || true
wait $pid || fail "inspector run exited with an error: $(tail -5 run.log)"
"$venv/bin/python" - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
log = (work / "run.log").read_text()
path = work / "state" / "results.jsonl"
results = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
ng = [r for r in results if r["verdict"] == "NG"]
checks = {
    # a loaded machine may drop a frame (drop-oldest, counted): most must be inspected
    "results": len(results) >= 6,
    "NG parts": len(ng) >= 1,
    "prompt detector": "prompt" in log and all(r["recipe"].get("model_sha256") for r in results),
    "unknown branch": "bank " in log and "tokens" in log,
    "no inspection errors": all(r["code"] != 65535 for r in results),
}
print("installed service:", len(results), "results,", len(ng), "NG;",
      ", ".join(f"{k}: {'ok' if v else 'FAIL'}" for k, v in checks.items()))
if not all(checks.values()):
    print(log[-4000:])
    sys.exit(1)
PY

say "2. plain pip install into a fresh venv, demo from an empty folder"
"$PY" -m venv "$work/venv2"
"$work/venv2/bin/python" -m pip install -q --require-hashes --no-deps \
    -r "$REPO/requirements/runtime.txt" 2>&1 | grep -v "^WARNING: Location" || true
"$work/venv2/bin/python" -m pip install -q --no-deps --no-build-isolation "$REPO" 2>&1 \
    | grep -v "^WARNING: Location" || true
mkdir "$work/elsewhere" && cd "$work/elsewhere"
"$work/venv2/bin/inspector" demo --parts 12 --out demo-out >demo.log 2>&1 \
    || { tail -40 demo.log; fail "inspector demo from a plain pip install"; }
n_ng=$(find demo-out -name "*.png" | wc -l)
tail -5 demo.log
(( n_ng >= 1 )) || fail "the demo wrote no NG overlay"
port=$("$work/venv2/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$work/venv2/bin/inspector" demo --ui --ui-port "$port" --parts 60 --rate 4 --broker none \
    --out ui-out >ui.log 2>&1 &
ui=$!
for _ in $(seq 120); do grep -q "Station page:" ui.log && break; sleep 1; done
get() { "$work/venv2/bin/python" -c "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=10).read(8000).decode())" "$1" 2>&1 || true; }
page=$(get "http://127.0.0.1:$port/login")
script=$(get "http://127.0.0.1:$port/static/app.js")
kill -INT $ui 2>/dev/null || true
wait $ui || true
grep -q "Log in" <<<"$page" || { tail -20 ui.log; fail "the station page did not serve its login page"; }
grep -q "station page" <<<"$script" || fail "the station page's script is not in the package"
say "station page served by the pip-installed demo (login page and script)"
say "PASS: installed service and pip-installed demo ($n_ng NG overlay files)"
