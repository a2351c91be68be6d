#!/bin/sh
# tests/run-all.sh: installs what is missing (deploy/deps.sh), then builds and runs every test
# twice: a release build and an ASan+UBSan build, both with -Dwerror=true -Dserver=enabled
# (CUDA when nvcc is found). Prints the logs of failing tests, then runs the fuzz smoke test
# (tests/fuzz/run.sh) when present. Exit status 0 only if everything passed.
# Models come from ../shared beside the repository (ORTHOD_SHARED overrides).
# Build directories: build-test-release/ and build-test-asan/ (kept, so reruns are fast).
set -eu
cd "$(dirname "$0")/.."

./deploy/deps.sh
if [ -d /usr/local/cuda/bin ]; then
    PATH="/usr/local/cuda/bin:$PATH"
    export PATH
fi
if [ -z "${ORTHOD_SHARED:-}" ] && [ ! -d ../shared/models ]; then
    echo "tests/run-all.sh: ../shared/models not found; model tests will skip (set ORTHOD_SHARED)" >&2
fi
JOBS=$(nproc 2>/dev/null || echo 2)

failed=""
# build NAME MESON-OPTIONS...: configure (or reconfigure), build, test
run_variant() {
    name=$1
    shift
    dir="build-test-$name"
    echo "==== $name: meson setup $dir $*" >&2
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    if ! ninja -C "$dir"; then
        failed="$failed $name-build"
        return 0
    fi
    echo "==== $name: meson test" >&2
    if ! meson test -C "$dir" --print-errorlogs --num-processes "$JOBS"; then
        failed="$failed $name-tests"
    fi
}

run_variant release --buildtype=release -Dwerror=true -Dserver=enabled
run_variant asan --buildtype=debugoptimized -Dwerror=true -Dserver=enabled \
    -Db_sanitize=address,undefined

if [ -x tests/fuzz/run.sh ]; then
    echo "==== fuzz smoke run: tests/fuzz/run.sh" >&2
    tests/fuzz/run.sh || failed="$failed fuzz"
fi

if [ -n "$failed" ]; then
    echo "tests/run-all.sh: FAILED:$failed" >&2
    exit 1
fi
echo "tests/run-all.sh: all builds and tests passed" >&2
