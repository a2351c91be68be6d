#!/bin/sh
# deploy/install.sh: installs a built orthod as a systemd service (run as root):
#   /usr/local/bin/orthod, the CUDA backend module /usr/local/lib/orthod/liborthod_cuda.so
#   when the build has one (orthod loads it for --device cuda, relative to its own path:
#   gpu/loader.h), /etc/orthod/orthod.conf (an existing one is kept), the unit
#   /etc/systemd/system/orthod.service, and the system user `orthod` (state in /var/lib/orthod).
#   deploy/install.sh [BUILD_DIR]     (default build-quickstart, made by deploy/quickstart.sh)
# DESTDIR=/some/root installs under that root and skips user creation and systemctl (for
# packaging and tests).
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build-quickstart}
ROOT=${DESTDIR:-}

if [ ! -x "$BUILD/server/orthod" ]; then
    echo "deploy/install.sh: $BUILD/server/orthod not found; build first (deploy/quickstart.sh, or meson setup $BUILD && ninja -C $BUILD)" >&2
    exit 1
fi
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    echo "deploy/install.sh: run as root (or set DESTDIR)" >&2
    exit 1
fi

install -D -m 0755 "$BUILD/server/orthod" "$ROOT/usr/local/bin/orthod"
if [ -f "$BUILD/server/liborthod_cuda.so" ]; then
    install -D -m 0644 "$BUILD/server/liborthod_cuda.so" "$ROOT/usr/local/lib/orthod/liborthod_cuda.so"
else
    echo "deploy/install.sh: $BUILD has no CUDA module (built without CUDA): --device cuda will not be available" >&2
fi
install -D -m 0644 deploy/orthod.service "$ROOT/etc/systemd/system/orthod.service"
install -D -m 0644 deploy/README.md "$ROOT/usr/local/share/doc/orthod/README.md"
install -d -m 0755 "$ROOT/etc/orthod"

if [ -z "$ROOT" ]; then
    getent group orthod >/dev/null || groupadd --system orthod
    getent passwd orthod >/dev/null ||
        useradd --system --gid orthod --home-dir /var/lib/orthod --no-create-home \
            --shell /usr/sbin/nologin --comment "orthod LLM server" orthod
fi

conf="$ROOT/etc/orthod/orthod.conf"
if [ -e "$conf" ]; then
    install -m 0644 etc/orthod.conf "$conf.dist"
    echo "deploy/install.sh: kept $conf; the shipped one is $conf.dist" >&2
else
    install -m 0640 etc/orthod.conf "$conf"
    if [ -z "$ROOT" ]; then
        chgrp orthod "$conf"
    fi
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
cat >&2 <<MSG
deploy/install.sh: installed. Next:
  1. set \`model = /var/lib/orthod/models/NAME.gguf\` in /etc/orthod/orthod.conf
     (the file must be readable by user orthod), and api-key-file if clients are not local
  2. orthod config --config /etc/orthod/orthod.conf      # check the effective settings
  3. systemctl enable --now orthod && journalctl -u orthod -f
MSG
