#!/usr/bin/env bash
# Install Inspector as a systemd service on a line PC (Debian 12, Python 3.11).
#
#   sudo scripts/install-service.sh            # venv, unit, user, config; enable + (re)start
#   sudo scripts/install-service.sh --gpu      # also the `gpu` extra (TensorRT, pycuda)
#   sudo scripts/install-service.sh --no-start # enable only (edit the config first)
#   DESTDIR=/tmp/stage scripts/install-service.sh --no-venv
#                                              # stage the files under a folder: no user,
#                                              # no systemctl, nothing outside DESTDIR
#
# What goes where:
#   /opt/inspector/venv                    virtual environment with inspector installed
#   /etc/inspector/station.yaml            station config (written once, never overwritten)
#   /etc/inspector/recipes/                recipes (the demo recipe, copied once)
#   /etc/inspector/credentials/            root-only; mqtt-password for LoadCredential=
#   /etc/systemd/system/inspector.service  the unit (replaced when it changed)
#   /usr/lib/sysusers.d/inspector.conf     the `inspector` user
#   /usr/lib/tmpfiles.d/inspector.conf     the credentials folder
#   /var/lib/inspector                     state, created by systemd (StateDirectory=)
# Idempotent: a second run changes only what differs. Undo: scripts/uninstall-service.sh.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=/opt/inspector
ETC=/etc/inspector
UNIT_DIR=/etc/systemd/system
PY=${PYTHON:-python3.11}
extras=""
lock=requirements/runtime.txt
venv=1
start=1

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --gpu) extras="[gpu]" ;;
        --no-venv) venv=0 ;;
        --no-start) start=0 ;;
        --python) PY="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-service.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ -z "$DESTDIR" && $(id -u) -ne 0 ]]; then
    echo "install-service.sh: run as root (sudo), or set DESTDIR to stage into a folder" >&2
    exit 1
fi

say() { echo ">> $*"; }

# put SRC at DEST with MODE when the content differs (or DEST is missing)
put() {
    local src=$1 dest=$DESTDIR$2 mode=$3
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        return
    fi
    install -D -m "$mode" "$src" "$dest"
    say "installed $2"
}

# 1. virtual environment with inspector (non-editable: the repo may go away)
if [[ $venv -eq 1 ]]; then
    command -v "$PY" >/dev/null || PY=python3
    if [[ ! -x "$DESTDIR$PREFIX/venv/bin/python" ]]; then
        say "creating $PREFIX/venv with $($PY --version)"
        mkdir -p "$DESTDIR$PREFIX"
        "$PY" -m venv "$DESTDIR$PREFIX/venv"
    fi
    say "installing $lock and inspector into $PREFIX/venv"
    # Exactly the locked set (hashes checked), then the project with nothing resolved beside
    # it. The wheel carries the models, the demo recipe and its calibration.
    "$DESTDIR$PREFIX/venv/bin/python" -m pip install -q --require-hashes --no-deps -r "$REPO/$lock"
    "$DESTDIR$PREFIX/venv/bin/python" -m pip install -q --no-deps --no-build-isolation \
        --force-reinstall "$REPO"
    if [[ -n "$extras" ]]; then
        say "installing the gpu extra (not locked: TensorRT comes from NVIDIA's index or JetPack)"
        "$DESTDIR$PREFIX/venv/bin/python" -m pip install -q "$REPO$extras"
    fi
fi
put "$REPO/README.md" "$PREFIX/README.md" 0644

# 2. unit, user and tmpfiles snippets
put "$REPO/systemd/inspector.service" "$UNIT_DIR/inspector.service" 0644
put "$REPO/systemd/inspector.sysusers.conf" /usr/lib/sysusers.d/inspector.conf 0644
put "$REPO/systemd/inspector.tmpfiles.conf" /usr/lib/tmpfiles.d/inspector.conf 0644

# 3. configuration: written once; the operator's edits are never overwritten
install -d -m 0755 "$DESTDIR$ETC"
install -d -m 0700 "$DESTDIR$ETC/credentials"
if [[ ! -e "$DESTDIR$ETC/credentials/mqtt-password" ]]; then
    install -m 0600 /dev/null "$DESTDIR$ETC/credentials/mqtt-password"
    say "created an empty $ETC/credentials/mqtt-password (put the broker password there)"
fi
if [[ ! -e "$DESTDIR$ETC/recipes" ]]; then
    mkdir -p "$DESTDIR$ETC/recipes"
    cp -r "$REPO/recipes/demo" "$DESTDIR$ETC/recipes/demo"
    rm -rf "$DESTDIR$ETC/recipes/demo/cache"
    chmod -R u=rwX,go=rX "$DESTDIR$ETC/recipes"
    say "copied the demo recipe to $ETC/recipes/demo"
fi
if [[ ! -e "$DESTDIR$ETC/station.yaml" ]]; then
    cat > "$DESTDIR$ETC/station.yaml" <<'YAML'
# Station config of this line PC (inspector validate /etc/inspector/station.yaml).
# Relative paths are relative to this folder. Written once by install-service.sh.
station: {site: plant1, line: line1, station: st1}
cameras:
  - name: cam0
    # replace the synthetic stand-in with the station's camera, e.g.
    # source: {kind: genicam, serial_number: "ABC123", features: {ExposureTime: 2000}}
    source: {kind: synthetic, seed: 0, width: 512, height: 512, rate_hz: 2}
recipe: recipes/demo
storage: {state_dir: /var/lib/inspector}
console: false                # results go to MQTT and results.jsonl, not to the journal
# mqtt:
#   host: broker.plant.local
#   port: 8883
#   tls: {ca: ca.pem}
#   username: inspector-st1
#   password_file: /run/credentials/inspector.service/mqtt-password
# archive: {max_age_days: 30, min_free_pct: 10, ok_sample_every: 100}
# health: {prometheus_port: 9464}
# the station page (then: inspector user add NAME --role engineer --config this file)
# web: {enabled: true, host: 127.0.0.1, port: 8080}
YAML
    chmod 0644 "$DESTDIR$ETC/station.yaml"
    say "wrote $ETC/station.yaml (edit it: cameras, recipe, mqtt)"
fi

# 4. user, credentials folder, systemd
if [[ -n "$DESTDIR" ]]; then
    say "staged under $DESTDIR (no user created, systemctl not called)"
    exit 0
fi
systemd-sysusers /usr/lib/sysusers.d/inspector.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/inspector.conf
systemctl daemon-reload
systemctl enable inspector.service
if [[ $start -eq 1 ]]; then
    say "validating and (re)starting inspector.service"
    "$PREFIX/venv/bin/inspector" validate "$ETC/station.yaml"
    systemctl restart inspector.service
    systemctl --no-pager status inspector.service || true
else
    say "enabled; start with: systemctl start inspector"
fi
