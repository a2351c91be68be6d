#!/bin/sh
# tests/test_deploy.sh: deploy/: the unit passes `systemd-analyze verify` (exit status 0 and
# no warning about the unit; when systemd-analyze is installed), install.sh installs binary,
# CUDA module, unit, docs and config under DESTDIR and keeps an existing config, the installed
# config loads (`orthod config`), the installed orthod finds the installed module, and deps.sh
# lists every package the build needs.
# Usage: test_deploy.sh PATH/TO/orthod [MODULE] (run from anywhere; finds the repo itself).
# MODULE stands in for liborthod_cuda.so in the fake build dir (the tests pass the CPU
# emulator built as a module, so a host without CUDA checks the install layout too).
set -eu
ORTHOD=$(readlink -f "${1:?usage: test_deploy.sh PATH/TO/orthod [MODULE]}")
MODULE=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# the unit file: systemd's own checker, with ExecStart pointing at this build
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|/usr/local/bin/orthod|$ORTHOD|" "$ROOT/deploy/orthod.service" >"$TMP/orthod.service"
    # --man=no: the Documentation= page is not installed here
    rc=0
    out=$(systemd-analyze verify --man=no "$TMP/orthod.service" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "$out"
        fail "systemd-analyze verify exited with $rc"
    fi
    # it exits 0 on unknown keys and unparsable values, but names the file and line
    if echo "$out" | grep "orthod.service" | grep -v "Documentation"; then
        fail "systemd-analyze verify warned about the unit"
    fi
    echo "ok: systemd-analyze verify"
else
    echo "skip: systemd-analyze not installed"
fi
for k in Type=notify WatchdogSec= User=orthod StateDirectory=orthod ProtectSystem=strict \
    NoNewPrivileges=yes PrivateTmp=yes RestrictAddressFamilies= ExecReload=; do
    grep -q "^$k" "$ROOT/deploy/orthod.service" || fail "orthod.service lacks $k"
done
echo "ok: unit has the required settings"

# install.sh into a scratch root: the binary comes from a fake build dir
mkdir -p "$TMP/build/server"
cp "$ORTHOD" "$TMP/build/server/orthod"
if [ -n "$MODULE" ]; then
    cp "$MODULE" "$TMP/build/server/liborthod_cuda.so"
fi
DESTDIR="$TMP/root" "$ROOT/deploy/install.sh" "$TMP/build" 2>"$TMP/install.log" ||
    { cat "$TMP/install.log"; fail "install.sh failed"; }
for f in usr/local/bin/orthod etc/systemd/system/orthod.service etc/orthod/orthod.conf \
    usr/local/share/doc/orthod/README.md; do
    [ -e "$TMP/root/$f" ] || fail "install.sh did not install /$f"
done
[ -x "$TMP/root/usr/local/bin/orthod" ] || fail "installed orthod is not executable"
"$TMP/root/usr/local/bin/orthod" config --config "$TMP/root/etc/orthod/orthod.conf" >/dev/null ||
    fail "the installed config does not load"
echo "ok: install.sh"
if [ -n "$MODULE" ]; then
    [ -f "$TMP/root/usr/local/lib/orthod/liborthod_cuda.so" ] ||
        fail "install.sh did not install /usr/local/lib/orthod/liborthod_cuda.so"
    # the installed binary finds the installed module through its own path (gpu/loader.h)
    ORTHOD_CUDA_MODULE='' "$TMP/root/usr/local/bin/orthod" bench --random-model tiny \
        --prompt-tokens 4 --gen-tokens 1 --repetitions 1 --threads 1 --device cuda \
        >"$TMP/bench.log" 2>&1 || { cat "$TMP/bench.log"; fail "the installed orthod cannot use the installed module"; }
    grep -q "usr/local/lib/orthod/liborthod_cuda.so" "$TMP/bench.log" ||
        { cat "$TMP/bench.log"; fail "the installed orthod did not say which module it loaded"; }
    echo "ok: the installed orthod loads /usr/local/lib/orthod/liborthod_cuda.so"
fi
echo "port = 9999" >"$TMP/root/etc/orthod/orthod.conf"
DESTDIR="$TMP/root" "$ROOT/deploy/install.sh" "$TMP/build" 2>/dev/null
grep -q "port = 9999" "$TMP/root/etc/orthod/orthod.conf" || fail "install.sh replaced an existing config"
[ -e "$TMP/root/etc/orthod/orthod.conf.dist" ] || fail "install.sh did not leave orthod.conf.dist"
echo "ok: install.sh keeps an existing config"

# deps.sh names the libraries the build uses
list=$("$ROOT/deploy/deps.sh" --list)
for p in meson ninja-build libuv1-dev libmicrohttpd-dev libjansson-dev libinih-dev libcmocka-dev \
    libsystemd-dev libcurl4-openssl-dev python3-yaml clang; do
    echo " $list " | grep -q " $p " || fail "deploy/deps.sh does not install $p"
done
echo "ok: deps.sh list"
echo "all deploy checks passed"
