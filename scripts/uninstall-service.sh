#!/usr/bin/env bash
# Remove what scripts/install-service.sh installed. Idempotent.
#
#   sudo scripts/uninstall-service.sh          # stop, disable; remove unit, venv, snippets
#   sudo scripts/uninstall-service.sh --purge  # also /etc/inspector, /var/lib/inspector
#                                              # and the `inspector` user
#   DESTDIR=/tmp/stage scripts/uninstall-service.sh [--purge]   # staged files only
#
# Without --purge the station config, recipes, credentials, outbox (unsent results)
# and the image archive stay, so that a reinstall carries on where this one stopped.
set -euo pipefail
DESTDIR=${DESTDIR:-}
purge=0
case "${1:-}" in
    --purge) purge=1 ;;
    "") ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall-service.sh: unknown option $1" >&2; exit 2 ;;
esac
if [[ -z "$DESTDIR" && $(id -u) -ne 0 ]]; then
    echo "uninstall-service.sh: run as root (sudo), or set DESTDIR" >&2
    exit 1
fi
say() { echo ">> $*"; }

if [[ -z "$DESTDIR" ]] && command -v systemctl >/dev/null; then
    if systemctl list-unit-files inspector.service >/dev/null 2>&1; then
        systemctl disable --now inspector.service 2>/dev/null || true
    fi
fi
for f in /etc/systemd/system/inspector.service /usr/lib/sysusers.d/inspector.conf \
         /usr/lib/tmpfiles.d/inspector.conf; do
    if [[ -e "$DESTDIR$f" ]]; then
        rm -f "$DESTDIR$f"
        say "removed $f"
    fi
done
if [[ -e "$DESTDIR/opt/inspector" ]]; then
    rm -rf "$DESTDIR/opt/inspector"
    say "removed /opt/inspector"
fi
if [[ $purge -eq 1 ]]; then
    for d in /etc/inspector /var/lib/inspector; do
        if [[ -e "$DESTDIR$d" ]]; then
            rm -rf "$DESTDIR$d"
            say "removed $d"
        fi
    done
    if [[ -z "$DESTDIR" ]] && id inspector >/dev/null 2>&1; then
        userdel inspector
        say "removed user inspector"
    fi
else
    say "kept /etc/inspector and /var/lib/inspector (--purge removes them)"
fi
if [[ -z "$DESTDIR" ]] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
fi
