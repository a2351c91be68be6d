#!/usr/bin/env bash
# bench/cpu-vs-llamacpp.sh: orthod's CPU speed beside llama.cpp's, on the same GGUF files,
# the same thread counts, in the same minutes (runs interleaved), and the ratio table.
#
# usage: bench/cpu-vs-llamacpp.sh LLAMA_BIN [ORTHOD_BUILD]
#   LLAMA_BIN     folder holding llama-bench, built from llama.cpp's public source outside
#                 this repository (see docs/performance.md for the commands)
#   ORTHOD_BUILD  orthod's meson build folder (default: build)
# environment:
#   ROUNDS=2      interleaved rounds (orthod, llama.cpp, orthod, llama.cpp, ...)
#   REPS=3        repetitions per run (llama-bench -r, orthod bench --repetitions)
#   THREADS="1 2" thread counts
#   DEPTHS="1024 4096"  decode depths measured for the 110M rows (empty: none)
#   MODELS=DIR    where the random-weight GGUF files are written (default: a temp folder,
#                 removed at the end; an existing file is reused)
#   ONLY=REGEX    only the rows whose "shape dtype" matches (e.g. ONLY='110M q8_0')
#   BOOST=1       run every benchmark in its own session with autogroup nice -20 (root; on
#                 a Linux host shared with other work, where autogroup scheduling splits
#                 the CPUs between sessions, the benchmarks then get the cores they ask for)
#
# The models are random-weight Llama GGUF files that orthod writes (`orthod bench
# --random-model SHAPE --dtype T --save FILE`): stories15M in F32, F16, Q8_0 and
# stories110M in F16, Q8_0. Tests: pp512 (prefill), tg128 (decode) from an empty cache,
# and tg64 after DEPTHS tokens (llama-bench -d); llama.cpp runs with flash attention on
# (-fa 1) and its default F16 KV cache, orthod with its F16 KV cache. Every figure is the
# median of all samples of all rounds (tokens/s); ratio = orthod / llama.cpp.
# The machine may be shared: read the ratios, which come from the same minutes.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
llama_bin=$1
build=${2:-build}
orthod="$build/server/orthod"
llama_bench="$llama_bin/llama-bench"
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-3}
THREADS=${THREADS:-"1 2"}
DEPTHS=${DEPTHS-"1024 4096"}
ONLY=${ONLY:-.}
BOOST=${BOOST:-0}
# boosted: a new session whose autogroup gets nice -20, then the program
run() {
  if [ "$BOOST" = 1 ]; then
    setsid sh -c 'echo -20 > /proc/self/autogroup; exec "$@"' boost "$@"
  else
    "$@"
  fi
}
[ -x "$orthod" ] || { echo "no $orthod: build orthod first (meson setup $build && ninja -C $build)" >&2; exit 1; }
[ -x "$llama_bench" ] || { echo "no $llama_bench: give the folder of a llama.cpp build" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON results" >&2; exit 1; }

if [ -n "${MODELS:-}" ]; then
  mdir=$MODELS
  mkdir -p "$mdir"
else
  mdir=$(mktemp -d)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${MODELS:-}" ] || rm -rf "$mdir"' EXIT

rows=("stories15M f32" "stories15M f16" "stories15M q8_0" "stories110M f16" "stories110M q8_0")
for r in "${rows[@]}"; do
  read -r shape dtype <<<"$r"
  grep -Eq "$ONLY" <<<"$shape $dtype" || continue
  f="$mdir/$shape-$dtype.gguf"
  [ -s "$f" ] || "$orthod" bench --random-model "$shape" --dtype "$dtype" --save "$f" \
                   --prompt-tokens 0 --gen-tokens 1 --repetitions 1 --threads 1 >/dev/null 2>&1 ||
    { echo "orthod could not write $f" >&2; exit 1; }
done

# one run of each program; samples appended to $work/<key>.{orthod,llama}
run_pair() {   # key file threads depth pp tg
  local key=$1 f=$2 t=$3 d=$4 pp=$5 tg=$6
  run "$orthod" bench --model "$f" --threads "$t" --depth "$d" --prompt-tokens "$pp" \
      --gen-tokens "$tg" --repetitions "$REPS" --json 2>/dev/null |
    python3 -c 'import json,sys
r=json.load(sys.stdin)
for t in r["results"]:
    print(t["test"][:2], " ".join("%.3f" % s for s in t["samples"]))' >>"$work/$key.orthod"
  local args=(-m "$f" -t "$t" -r "$REPS" -fa 1 -o jsonl -p "$pp" -n "$tg")
  [ "$d" -gt 0 ] && args+=(-d "$d")
  run "$llama_bench" "${args[@]}" 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"): continue
    t = json.loads(line)
    open(sys.argv[1], "w").write("%s (build %s)" % (t.get("build_commit", "?"), t.get("build_number", "?")))
    kind = "pp" if t["n_gen"] == 0 else "tg"
    print(kind, " ".join("%.3f" % s for s in t["samples_ts"]))' "$work/llama-build" >>"$work/$key.llama"
}

median() {   # kind file -> median of all samples of that kind
  python3 -c 'import sys,statistics
k, f = sys.argv[1], sys.argv[2]
v = [float(x) for l in open(f) if l.split()[0] == k for x in l.split()[1:]]
print("%.1f" % statistics.median(v) if v else "n/a")' "$1" "$2"
}

echo "# $("$orthod" --version 2>/dev/null | head -1); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; rounds $ROUNDS x $REPS repetitions; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| model | threads | test | orthod t/s | llama.cpp t/s | orthod / llama.cpp |"
echo "|---|---:|---|---:|---:|---:|"
for r in "${rows[@]}"; do
  read -r shape dtype <<<"$r"
  grep -Eq "$ONLY" <<<"$shape $dtype" || continue
  f="$mdir/$shape-$dtype.gguf"
  for t in $THREADS; do
    tests=("0 512 128")
    if [ "$shape" = stories110M ]; then
      for d in $DEPTHS; do tests+=("$d 0 64"); done
    fi
    for spec in "${tests[@]}"; do
      read -r d pp tg <<<"$spec"
      key="$shape-$dtype-$t-$d"
      for ((i = 0; i < ROUNDS; i++)); do run_pair "$key" "$f" "$t" "$d" "$pp" "$tg"; done
      for kind in pp tg; do
        [ "$kind" = pp ] && [ "$pp" -eq 0 ] && continue
        n=$([ "$kind" = pp ] && echo "$pp" || echo "$tg")
        o=$(median "$kind" "$work/$key.orthod")
        l=$(median "$kind" "$work/$key.llama")
        name="$kind$n"
        [ "$d" -gt 0 ] && name="$name @ d$d"
        ratio=$(python3 -c 'import sys
o, l = sys.argv[1], sys.argv[2]
print("%.2fx" % (float(o) / float(l)) if "n/a" not in (o, l) else "n/a")' "$o" "$l")
        echo "| ${shape#stories} $dtype | $t | $name | $o | $l | $ratio |"
      done
    done
  done
done
echo
echo "# llama.cpp $(cat "$work/llama-build" 2>/dev/null || echo '(no run)'), llama-bench -fa 1; finished $(date -u '+%H:%M UTC')"
