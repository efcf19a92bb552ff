#!/usr/bin/env bash
# Drift check before a lock update (not run in CI): install the newest versions that
# setup.cfg's ranges allow into a scratch venv and run the default suite there, so that a
# new release that breaks Inspector is seen here, not on a line PC. When it passes,
# scripts/lock.sh re-resolves the lock; when it fails, the ranges or the code need work.
#   scripts/check_newest.sh [pytest args]     (about 15 minutes)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
venv=$(mktemp -d /tmp/inspector-newest.XXXXXX)
trap 'rm -rf "$venv"' EXIT
"$PY" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --upgrade --upgrade-strategy eager "${REPO}[dev,train]" 2>&1 \
    | grep -v "^WARNING: Location" || true
echo ">> newest allowed versions, compared with the lock:"
"$venv/bin/python" -m pip freeze --exclude inspector | sort > "$venv/newest.txt"
grep -E "^[A-Za-z0-9_.-]+==" "$REPO/requirements/dev.txt" | sed 's/ .*//' | sort > "$venv/locked.txt"
diff "$venv/locked.txt" "$venv/newest.txt" | grep "^[<>]" || echo "   (same as the lock)"
cd "$REPO"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
