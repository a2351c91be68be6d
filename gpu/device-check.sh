#!/usr/bin/env bash
# gpu/device-check.sh: THE script to run on a GPU host (one H200 in the device tool): build
# with CUDA, run the CUDA parity tests, measure the ceilings (copy bandwidth, cuBLAS GEMM)
# and the model benchmark (prefill pp512, decode at batch 1 and 32 on a random 7B F16 model),
# and leave in $OUT (at most 8 files come back): device-check.log (all output, with each step's exit
# status and seconds), micro.json, model.json, summary.md, summary.json. Prints a short
# table last.
# Usage (repo root): OUT=/some/dir bash gpu/device-check.sh
# Environment: OUT (default ./device-out), DEADLINE_S (default 450: later steps are skipped
# or shortened so the whole run ends by then), JOBS (default: nproc), ORTHOD_SHARED (folder
# with models/stories260K.gguf; default ../shared, then ./.device), CUDA_HOME (default
# /usr/local/cuda).
# Needs only bash, coreutils, a C/C++ compiler, CUDA (nvcc + cuBLAS), meson and ninja.
set -u
START=$(date +%s)
OUT=${OUT:-$PWD/device-out}
DEADLINE_S=${DEADLINE_S:-450}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
B=${BUILD_DIR:-build-device}
mkdir -p "$OUT"
LOG="$OUT/device-check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
export PATH="$CUDA_HOME/bin:$PATH"
# meson and ninja may come as Python packages (the H200 image's venv): find them
for d in /opt/torch/.venv/bin "$(dirname "$(command -v python3 2>/dev/null || echo /usr/bin/python3)")"; do
    [ -d "$d" ] && PATH="$PATH:$d"
done
if ! command -v meson >/dev/null 2>&1 && python3 -c 'import mesonbuild' 2>/dev/null; then
    mkdir -p /tmp/devcheck-bin
    printf '#!/bin/sh\nexec python3 -m mesonbuild.mesonmain "$@"\n' >/tmp/devcheck-bin/meson
    chmod +x /tmp/devcheck-bin/meson
    PATH="/tmp/devcheck-bin:$PATH"
fi
if ! command -v ninja >/dev/null 2>&1 && python3 -c 'import ninja' 2>/dev/null; then
    mkdir -p /tmp/devcheck-bin
    printf '#!/bin/sh\nexec python3 -m ninja "$@"\n' >/tmp/devcheck-bin/ninja
    chmod +x /tmp/devcheck-bin/ninja
    PATH="/tmp/devcheck-bin:$PATH"
fi
export PATH
STEPS=/tmp/devcheck-steps.tsv   # not in $OUT: at most 8 files come back
printf 'step\trc\tseconds\n' >"$STEPS"

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE_S - $(elapsed) )); }

# step NAME LIMIT_S CMD...: runs CMD under timeout (shortened to the time left), logs it,
# records the status; never stops the script.
step() {
    local name=$1 limit=$2
    shift 2
    local l
    l=$(left)
    if [ "$l" -lt 15 ]; then
        echo "=== SKIP $name: only ${l}s left of DEADLINE_S=$DEADLINE_S"
        printf '%s\tskipped\t0\n' "$name" >>"$STEPS"
        return 124
    fi
    [ "$limit" -gt "$l" ] && limit=$l
    echo
    echo "=== $name (limit ${limit}s, at $(elapsed)s): $*"
    local t0
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@"
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    [ $rc -eq 124 ] && echo "=== $name TIMED OUT after ${limit}s"
    echo "=== $name: rc=$rc in ${dt}s"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >>"$STEPS"
    return $rc
}

echo "orthod device check, $(date -u +%FT%TZ), repo $(pwd), git $(git rev-parse --short HEAD 2>/dev/null || echo none)"
step nvidia-smi 30 nvidia-smi
step nvidia-smi-query 20 nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit,driver_version --format=csv
step versions 20 bash -c "nvcc --version | tail -2; meson --version; ninja --version; cc --version | head -1; c++ --version | head -1; nproc; free -g | head -2"

# --- configure: tests need cmocka for other suites; without it, a stub .pc lets meson
# configure and only the targets this script needs are built ---
export B CUDA_HOME
export CONF_ARGS="-Dserver=disabled -Dcuda=enabled -Dgpu_sm=90 -Dbuildtype=release -Db_ndebug=if-release"
# shellcheck disable=SC2086  # CONF_ARGS is a list of words
configure() { rm -rf "$B" && meson setup "$B" $CONF_ARGS "$@"; }
export -f configure
if ! step configure 150 bash -c 'configure' ; then
    if grep -qi "cmocka" "$LOG"; then
        echo "=== cmocka is missing: configuring with a stub pkg-config file (the GPU tests use tests/minicmocka.h)"
        mkdir -p /tmp/devcheck-stub-pc
        printf 'Name: cmocka\nDescription: stub for device-check\nVersion: 1.1.5\nCflags:\nLibs:\n' \
            >/tmp/devcheck-stub-pc/cmocka.pc
        export PKG_CONFIG_PATH="/tmp/devcheck-stub-pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
        step configure-stub-cmocka 150 bash -c 'configure -Dc_args=-DTEST_MINICMOCKA=1' ||
            step configure-no-tests 150 bash -c 'configure -Dtests=false'
    else
        step configure-no-tests 150 bash -c 'configure -Dtests=false'
    fi
fi

# --- build only what the checks need (the emulator tests are for machines without a GPU) ---
TARGETS=(bench/bench_gpu)
if [ -f "$B/build.ninja" ] && grep -q "^build tests/test_backend_ops_cuda:" "$B/build.ninja"; then
    TARGETS+=(tests/test_backend_ops_cuda tests/test_gpu_model)
fi
step build 360 ninja -C "$B" -j "$JOBS" "${TARGETS[@]}"

# without meson's test targets (configured with -Dtests=false), build the two tests by hand
# (with tests/testutil.c and tests/minicmocka.h in place of cmocka), linked like
# bench/bench_gpu (its link line in build.ninja has every library the build found)
manual_test() {
    local src out link rule linker
    src=$(realpath "$1")
    out=$(realpath -m "$2")
    shift 2
    rule=$(awk '/^build bench\/bench_gpu:/ {print $3; exit}' "$B/build.ninja")
    link=$(awk '/^build bench\/bench_gpu:/ {f = 1} f && /^ LINK_ARGS = / {sub(/^ LINK_ARGS = /, ""); print; exit}' \
        "$B/build.ninja")
    case "$rule" in
        cuda_LINKER) linker=nvcc ;;
        cpp_LINKER) linker=c++ ;;
        *) linker=cc ;;
    esac
    if [ -z "$link" ]; then
        echo "no link line for bench/bench_gpu in $B/build.ninja"
        return 1
    fi
    mkdir -p "$(dirname "$out")"
    # LINK_ARGS is ninja/shell-quoted words: let the shell split it as ninja would
    local util
    util=$(realpath tests/testutil.c)
    (cd "$B" && cc -std=c11 -O2 -D_GNU_SOURCE -DTEST_MINICMOCKA=1 "$@" -c "$src" -o "$out.o" &&
        cc -std=c11 -O2 -D_GNU_SOURCE -c "$util" -o "$out.util.o" &&
        eval "$linker -o \"\$out\" \"\$out.o\" \"\$out.util.o\" $link")
}
export -f manual_test
if [ ! -x "$B/tests/test_backend_ops_cuda" ] && [ -x "$B/bench/bench_gpu" ]; then
    step build-test-ops-by-hand 120 bash -c 'manual_test "$@"' _ tests/test_backend_ops.c \
        "$B/tests/test_backend_ops_cuda" -DTEST_CUDA
    step build-test-model-by-hand 120 bash -c 'manual_test "$@"' _ tests/test_gpu_model.c \
        "$B/tests/test_gpu_model"
fi

# --- parity tests (every op vs the CPU; whole models vs the CPU) ---
SHARED=${ORTHOD_SHARED:-$(cd .. && pwd)/shared}
M260=""
for d in "$SHARED" ./shared ../shared ./.device; do   # .device/ is git-ignored: carry it
    if [ -f "$d/models/stories260K.gguf" ]; then M260="$d/models/stories260K.gguf"; break; fi
done
MODEL_ARGS=()
if [ -n "$M260" ]; then
    MODEL_ARGS+=(--model "$M260")
else
    echo "=== NOTE: stories260K.gguf not found (ORTHOD_SHARED=$SHARED): its parity and golden ids are not checked"
fi
MODEL_ARGS+=(--random stories110M:f16 --random stories110M:bf16 --random stories110M:q8_0 --random tiny:f32 --random tiny:q4_0)
export ORTHOD_SHARED="$SHARED"
if [ -x "$B/tests/test_backend_ops_cuda" ]; then
    step test-backend-ops 150 "$B/tests/test_backend_ops_cuda"
    step test-gpu-model 200 "$B/tests/test_gpu_model" "${MODEL_ARGS[@]}"
else
    echo "=== the parity tests were not built"
fi

# --- ceilings and the model benchmark ---
if [ -x "$B/bench/bench_gpu" ]; then
    step bench-micro 120 "$B/bench/bench_gpu" micro --json "$OUT/micro.json"
    step bench-llama7b 300 "$B/bench/bench_gpu" model --shape llama7b --dtype f16 --pp 512 --tg 64 \
        --ctx 128 --batch 1,32 --threads "$JOBS" --json "$OUT/model.json"
    if [ ! -s "$OUT/model.json" ]; then
        step bench-stories110M 120 "$B/bench/bench_gpu" model --shape stories110M --dtype f16 --pp 512 \
            --tg 64 --ctx 128 --batch 1,32 --json "$OUT/model-stories110M.json"
    fi
    # the same numbers through `orthod bench` (server/cli/bench.c; decode from an empty cache)
    step build-orthod 150 ninja -C "$B" -j "$JOBS" server/orthod server/liborthod_cuda.so
    if [ -x "$B/server/orthod" ]; then
        for nb in 1 32; do
            # shellcheck disable=SC2016  # the inner script's variables are its arguments
            step "orthod-bench-b$nb" 150 bash -c 'set -o pipefail; "$0" bench --device cuda:0 \
                --random-model llama7b --dtype f16 --prompt-tokens 512 --gen-tokens 64 --batch "$1" \
                --repetitions 3 --threads "$2" --json | tee "$3"' \
                "$B/server/orthod" "$nb" "$JOBS" "$OUT/orthod-bench-b$nb.json"
        done
    fi
    # decode at a longer context (flash-decoding splits), batch 1 and 32, if time allows
    step bench-llama7b-ctx2k 150 "$B/bench/bench_gpu" model --shape llama7b --dtype f16 --pp 512 \
        --tg 32 --ctx 2048 --batch 1,32 --threads "$JOBS" --json "$OUT/model-ctx2k.json"
    # Q8_0 weights (dequantized to F16 at load, so decode reads 2 bytes per weight), if time allows
    step bench-llama7b-q8_0 150 "$B/bench/bench_gpu" model --shape llama7b --dtype q8_0 --pp 512 \
        --tg 32 --ctx 128 --batch 1 --threads "$JOBS" --json "$OUT/model-q8_0.json"
else
    echo "=== bench_gpu was not built: no numbers"
fi

# last, if the toolkit has it and time is left: the op tests under compute-sanitizer memcheck
if command -v compute-sanitizer >/dev/null && [ -x "$B/tests/test_backend_ops_cuda" ]; then
    step memcheck-backend-ops 150 compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$B/tests/test_backend_ops_cuda"
fi

# --- summary ---
echo
echo "=== steps"
column -t -s $'\t' "$STEPS" 2>/dev/null || cat "$STEPS"
PY=$(command -v python3 || true)
if [ -n "$PY" ]; then
    "$PY" - "$OUT" "$STEPS" <<'EOF'
import json, os, sys
out, steps_path = sys.argv[1], sys.argv[2]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None
micro, model, long_ctx = load("micro.json"), load("model.json"), load("model-ctx2k.json")
q8 = load("model-q8_0.json")
steps = []
with open(steps_path) as f:
    next(f)
    for line in f:
        n, rc, s = line.rstrip("\n").split("\t")
        steps.append({"step": n, "rc": rc, "seconds": s})
summary = {"steps": steps, "micro": micro, "model": model, "model_ctx2k": long_ctx, "model_q8_0": q8,
           "orthod_bench": [load("orthod-bench-b1.json"), load("orthod-bench-b32.json")]}
with open("/tmp/devcheck-summary.json", "w") as f:   # at most 8 files come back from $OUT
    json.dump(summary, f, indent=2)
rows = []
def dec(m, b, g=True, fu=True):
    for d in (m or {}).get("decode", []):
        if d["batch"] == b and d["graphs"] == g and d.get("fuse", g) == fu and d["rc"] == 0:
            return d
    return None
if micro:
    rows.append(("copy bandwidth D2D (read+write)", "%.0f GB/s" % micro["copy_gbps"]))
    rows.append(("cuBLAS F16 GEMM %d^3" % micro.get("gemm_n", 8192), "%.0f TFLOP/s" % micro["gemm_f16_tflops"]))
    for mm in micro.get("matmul", []):
        if mm["R"] == 1:
            rows.append(("matmul R=1 K=%d N=%d gemv / cublas" % (mm["K"], mm["N"]),
                         "%.0f / %.0f GB/s" % (mm["gbps_gemv"], mm["gbps_cublas"])))
for tag, m in (("ctx128", model), ("ctx2048", long_ctx), ("q8_0 ctx128", q8)):
    if not m or not m.get("model"):
        continue
    rows.append(("[%s] model" % tag, "%s %.1f GB weights" % (m["model"]["name"], m["model"]["weight_bytes"] / 1e9)))
    rows.append(("[%s] prefill pp%d" % (tag, m["prefill"]["tokens"]), "%.0f tok/s" % m["prefill"]["tok_s"]))
    for b, g, fu, what in ((1, True, True, "graphs+fusion"), (1, True, False, "graphs"),
                           (1, False, False, "eager"), (m.get("batch_max", 32), True, True, "graphs+fusion")):
        d = dec(m, b, g, fu)
        if d:
            rows.append(("[%s] decode batch %d %s" % (tag, b, what),
                         "%.1f tok/s (%.2f ms/step)" % (d["tok_s"], d["ms_per_step"])))
    if m["model"]["dtype"] not in ("f16", "bf16", "f32"):
        continue   # quantized weights are read as F16 on the device: the byte count would mislead
    rows.append(("[%s] batch-1 / copy bandwidth" % tag, "%.1f %% (graphs %.1f %%, eager %.1f %%)" %
                 (100 * m["b1_bandwidth_fraction"], 100 * m["b1_nofuse_bandwidth_fraction"],
                  100 * m["b1_nographs_bandwidth_fraction"])))
    if m.get("batch_max", 32) > 1:
        rows.append(("[%s] batch-%d / batch-1 throughput" % (tag, m.get("batch_max", 32)),
                     "%.2f x" % m["batch_speedup"]))
for nb in (1, 32):
    ob = load("orthod-bench-b%d.json" % nb)
    for res in (ob or {}).get("results", []):
        rows.append(("orthod bench batch %d %s" % (nb, res["test"]), "%.1f tok/s (median)" % res["tokens_per_second"]))
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("| measure | value |\n|---|---|\n")
    for k, v in rows:
        f.write("| %s | %s |\n" % (k, v))
    f.write("\n| step | rc | s |\n|---|---|---|\n")
    for s in steps:
        f.write("| %s | %s | %s |\n" % (s["step"], s["rc"], s["seconds"]))
print()
print("=== summary (%s)" % os.path.join(out, "summary.md"))
w = max([len(k) for k, _ in rows] + [10])
for k, v in rows:
    print("%-*s  %s" % (w, k, v))
bad = [s["step"] for s in steps if s["rc"] not in ("0",)]
print("steps not ok: %s" % (", ".join(bad) if bad else "none"))
EOF
else
    echo "(no python3: see $OUT/*.json)"
fi
echo "=== done in $(elapsed)s"
