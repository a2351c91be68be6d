#!/bin/sh
# tests/test_deploy.sh: deploy/: the unit passes `systemd-analyze verify` (when available),
# install.sh installs binary, unit, docs and config under DESTDIR and keeps an existing
# config, the installed config loads (`orthod config`), and deps.sh lists every package the
# build needs. Usage: test_deploy.sh PATH/TO/orthod (run from anywhere; finds the repo itself).
set -eu
ORTHOD=$(readlink -f "${1:?usage: test_deploy.sh PATH/TO/orthod}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# the unit file: systemd's own checker, with ExecStart pointing at this build
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|/usr/local/bin/orthod|$ORTHOD|" "$ROOT/deploy/orthod.service" >"$TMP/orthod.service"
    out=$(systemd-analyze verify "$TMP/orthod.service" 2>&1 | grep -v "Documentation" || true)
    if echo "$out" | grep -q "orthod.service"; then
        echo "$out"
        fail "systemd-analyze verify found problems"
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
