#!/bin/sh
# tests/fuzz/run.sh: builds the libFuzzer targets of tests/fuzz/meson.build with clang
# (ASan + UBSan, the whole tree instrumented) and runs each one for a bounded time over
# a scratch copy of its seed corpus (tests/fuzz/corpus/<name>/; the seeds are never
# modified). Fails (exit 1) on any crash, leak, sanitizer report or timeout; the input
# that triggered it is kept as $FUZZ_BUILD/artifacts/<name>-crash-*.
#
# Then the HTTP fuzz run (tests/fuzz/fuzz_http.c, target name "http"): mutated request
# streams against a real `orthod serve` over loopback, from a build with the server
# (FUZZ_HTTP_BUILD, default the first of build-test-asan, build-asan, build-test-release
# that has one, as tests/run-all.sh leaves them).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated names to run (default: every fuzz_* that was built, and
#                  http)
#   FUZZ_BUILD     build folder (default <source>/build-fuzz; configured if missing)
#   FUZZ_JOBS      libFuzzer -fork=N processes per target (default 1)
#   ORTHOD_SHARED  shared data (models) for targets that load vocabularies
#
# Reproduce a crash: $FUZZ_BUILD/tests/fuzz/fuzz_<name> <artifact>
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$src/build-fuzz}
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}

if [ ! -f "$build/build.ninja" ]; then
    CC=${CC:-clang} meson setup "$build" "$src" -Dfuzz=true -Dserver=disabled -Dcuda=disabled \
        -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link
fi

# every fuzz target meson knows about (the rows of tests/fuzz/meson.build), and http
all=$(ninja -C "$build" -t targets all | sed -n 's|^tests/fuzz/fuzz_\([A-Za-z0-9_]*\): .*|\1|p' | sort -u)
names=${FUZZ_TARGETS:-$all http}
[ -n "$names" ] || { echo "run.sh: no fuzz targets configured in $build" >&2; exit 1; }
for n in $names; do
    [ "$n" = http ] && continue
    ninja -C "$build" "tests/fuzz/fuzz_$n" >/dev/null
done

# a UBSan report is a failure too (recoverable checks otherwise print and go on)
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"

mkdir -p "$build/artifacts"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/orthod-fuzz-XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
failed=""
for n in $names; do
    if [ "$n" = http ]; then
        hb=${FUZZ_HTTP_BUILD:-}
        if [ -z "$hb" ]; then
            for b in build-test-asan build-asan build-test-release; do
                if [ -f "$src/$b/build.ninja" ] && grep -q 'server/orthod' "$src/$b/build.ninja" &&
                   grep -q 'fuzz_http' "$src/$b/build.ninja"; then
                    hb=$src/$b
                    break
                fi
            done
        fi
        if [ -z "$hb" ]; then
            echo "== fuzz http: no build with the server (run tests/run-all.sh, or set FUZZ_HTTP_BUILD)" >&2
            failed="$failed http"
            continue
        fi
        ninja -C "$hb" server/orthod tests/fuzz_http >/dev/null
        shared=${ORTHOD_SHARED:-$src/../shared}
        echo "== fuzz_http: ${secs}s against $hb/server/orthod"
        if ! "$hb/tests/fuzz_http" "$hb/server/orthod" "$shared/models/stories260K.gguf" \
                --seconds "$secs" --artifacts "$build/artifacts" \
                --corpus "$src/tests/fuzz/corpus/http" > "$scratch/http.log" 2>&1; then
            tail -n 60 "$scratch/http.log"
            failed="$failed http"
        else
            tail -n 1 "$scratch/http.log"
        fi
        continue
    fi
    corpus="$scratch/$n"
    mkdir -p "$corpus"
    if [ -d "$src/tests/fuzz/corpus/$n" ]; then
        cp -R "$src/tests/fuzz/corpus/$n/." "$corpus/"
    fi
    fork=""
    [ "$jobs" -gt 1 ] && fork="-fork=$jobs"
    echo "== fuzz_$n: ${secs}s over $(ls "$corpus" | wc -l) seeds"
    # shellcheck disable=SC2086
    if ! "$build/tests/fuzz/fuzz_$n" "$corpus" -max_total_time="$secs" -timeout=10 \
            -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
            $fork -artifact_prefix="$build/artifacts/$n-" > "$scratch/$n.log" 2>&1; then
        tail -n 60 "$scratch/$n.log"
        failed="$failed $n"
    else
        grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|cov:' \
            "$scratch/$n.log" | tail -n 4
    fi
done
if [ -n "$failed" ]; then
    echo "run.sh: FAILED:$failed (inputs in $build/artifacts/)" >&2
    exit 1
fi
echo "run.sh: all fuzz targets ran ${secs}s without a failure"
