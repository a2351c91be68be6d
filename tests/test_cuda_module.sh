#!/bin/sh
# tests/test_cuda_module.sh: the CUDA backend is a module that orthod loads only when a CUDA
# device is asked for (gpu/loader.h). Checks, on the real binary:
#   - orthod links no CUDA library (ldd), whether or not CUDA was built;
#   - --device cpu never touches the module (a broken module in ORTHOD_CUDA_MODULE is ignored);
#   - no module found: the error says where it looked;
#   - a module that cannot be loaded: the error names the missing library (dlerror);
#   - a file that is not a module, and a module from another build, are refused;
#   - the CPU emulator of the CUDA backend, loaded as a module, generates what the CPU does;
#   - with the real module (CUDA builds): it needs the CUDA libraries, orthod does not; on a
#     host without a GPU --device cuda fails with a message, not a crash.
# Usage: test_cuda_module.sh ORTHOD EMU_MODULE NEEDSDEP_MODULE [CUDA_MODULE]
# The generation check needs $ORTHOD_SHARED/models/stories260K.gguf: without it the other
# checks run and the test reports SKIP (77).
set -u
ORTHOD=${1:?usage: test_cuda_module.sh ORTHOD EMU_MODULE NEEDSDEP_MODULE [CUDA_MODULE]}
EMU=${2:?emu module}
NEEDS=${3:?needsdep module}
REAL=${4:-}
MODEL=${ORTHOD_SHARED:-../shared}/models/stories260K.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
skipped=""
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# a small model needing no files: the errors come before it is built
BENCH="bench --random-model tiny --dtype f32 --prompt-tokens 4 --gen-tokens 2 --repetitions 1 --threads 1"

# run OUTFILE CMD...: runs CMD with stdout+stderr in OUTFILE; prints nothing; returns its status
run() {
    out=$1
    shift
    "$@" >"$out" 2>&1
}

# 1. no CUDA library in the binary
if command -v ldd >/dev/null 2>&1; then
    if ldd "$ORTHOD" | grep -E 'libcuda|libcublas|libnvrtc' >"$TMP/ldd"; then
        cat "$TMP/ldd"
        fail "orthod links CUDA libraries"
    else
        ok "orthod links no CUDA library"
    fi
else
    skipped="$skipped ldd"
fi

# 2. --device cpu ignores the module entirely
# shellcheck disable=SC2086  # BENCH is a list of words
if ORTHOD_CUDA_MODULE="$NEEDS" run "$TMP/o" "$ORTHOD" $BENCH --device cpu; then
    ok "--device cpu does not load the CUDA module"
else
    cat "$TMP/o"
    fail "--device cpu failed with a broken ORTHOD_CUDA_MODULE"
fi

# expect_err NEEDLE ENV-ASSIGNMENT: --device cuda fails (exit 1), its message holds NEEDLE
expect_err() {
    needle=$1 what=$2
    shift 2
    # shellcheck disable=SC2086
    if env "$@" "$ORTHOD" $BENCH --device cuda >"$TMP/o" 2>&1; then
        fail "$what: --device cuda succeeded"
        return
    fi
    if grep -qF -- "$needle" "$TMP/o"; then
        ok "$what: $(cat "$TMP/o")"
    else
        cat "$TMP/o"
        fail "$what: the message lacks '$needle'"
    fi
}

# 3. not found (explicit path; and the default search when the build has no module)
expect_err "$TMP/none.so" "module missing" ORTHOD_CUDA_MODULE="$TMP/none.so"
if [ -z "$REAL" ]; then
    expect_err "built without CUDA" "CPU-only build" ORTHOD_CUDA_MODULE=
fi
# 4. a library the module needs is missing: the module copied away from its rpath
cp "$NEEDS" "$TMP/liborthod_cuda.so"
expect_err "liborthod_testdep.so" "missing dependency" -u LD_LIBRARY_PATH ORTHOD_CUDA_MODULE="$TMP/liborthod_cuda.so"
# 5. loads, but is no orthod module (no entry symbol)
mkdir -p "$TMP/dep"
cp "$NEEDS" "$TMP/dep/liborthod_cuda.so"
cp "$(dirname "$NEEDS")/liborthod_testdep.so" "$TMP/dep/" 2>/dev/null || true
expect_err "is not an orthod CUDA module" "not a module" \
    ORTHOD_CUDA_MODULE="$TMP/dep/liborthod_cuda.so" LD_LIBRARY_PATH="$TMP/dep"
# 6. a module from another build: the build id differs
LC_ALL=C sed 's/orthod \([0-9.]*\) git /orthod \1 gut /' "$EMU" >"$TMP/other.so"
expect_err "was built from another orthod" "another build" ORTHOD_CUDA_MODULE="$TMP/other.so"

# 7. the emulated backend through the loader generates the CPU's greedy text
if [ -f "$MODEL" ]; then
    GEN="generate --model $MODEL --prompt Once --max-tokens 24 --temperature 0 --quiet --threads 1"
    # shellcheck disable=SC2086
    if ! "$ORTHOD" $GEN --device cpu >"$TMP/cpu" 2>"$TMP/cpu.err"; then
        cat "$TMP/cpu.err"
        fail "generate --device cpu"
    elif ! ORTHOD_CUDA_MODULE="$EMU" "$ORTHOD" $GEN --device cuda >"$TMP/emu" 2>"$TMP/emu.err"; then
        cat "$TMP/emu.err"
        fail "generate --device cuda with the emulator module"
    elif ! cmp -s "$TMP/cpu" "$TMP/emu"; then
        echo "cpu: $(cat "$TMP/cpu")"
        echo "emu: $(cat "$TMP/emu")"
        fail "the emulator module generates other text than the CPU"
    elif ! grep -q "CPU emulator" "$TMP/emu.err"; then
        cat "$TMP/emu.err"
        fail "loading the emulator module is not logged as a warning"
    else
        ok "emulator module via dlopen: same greedy text as the CPU ($(wc -c <"$TMP/cpu") bytes)"
    fi
else
    echo "skip: $MODEL not found: the generation check did not run"
    skipped="$skipped generate"
fi

# 8. the real module: it carries the CUDA dependencies, found through its rpath
if [ -n "$REAL" ]; then
    if ldd "$REAL" | grep -q 'libcublas'; then
        ok "liborthod_cuda.so needs libcublas"
    else
        ldd "$REAL"
        fail "liborthod_cuda.so does not link libcublas"
    fi
    # beside the binary: found without ORTHOD_CUDA_MODULE
    # shellcheck disable=SC2086
    if env ORTHOD_CUDA_MODULE= "$ORTHOD" $BENCH --device cuda >"$TMP/o" 2>&1; then
        ok "--device cuda runs (a GPU is present)"
    elif grep -qE "no CUDA device|CUDA driver|does not exist" "$TMP/o"; then
        ok "no GPU here: $(head -c 200 "$TMP/o")"
    else
        cat "$TMP/o"
        fail "--device cuda with the real module: unexpected failure"
    fi
fi

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
if [ -n "$skipped" ]; then
    echo "all checks that could run passed; not run:$skipped: SKIP"
    exit 77
fi
echo "all CUDA module checks passed"
