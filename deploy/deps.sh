#!/bin/sh
# deploy/deps.sh: installs every Debian 12 package any part of orthod needs (build, daemon,
# tests, fuzzing, the HTTP benchmarks in bench/). The one package list: deploy/quickstart.sh
# and tests/run-all.sh call this.
# Installs only what is missing; needs root (or sudo) only then.
#   deploy/deps.sh           install what is missing
#   deploy/deps.sh --list    print the list
set -eu

PACKAGES="
build-essential meson ninja-build pkg-config git
libuv1-dev libmicrohttpd-dev libjansson-dev libinih-dev libsystemd-dev libutf8proc-dev
libgnutls28-dev
libcmocka-dev curl libcurl4-openssl-dev openssl
python3 python3-numpy python3-yaml python3-torch
clang libclang-rt-14-dev
wrk
"

if [ "${1:-}" = "--list" ]; then
    echo $PACKAGES
    exit 0
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi

echo "deploy/deps.sh: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "deploy/deps.sh: run as root (or install sudo) to install:$missing" >&2
        exit 1
    fi
fi
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
