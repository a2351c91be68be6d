#!/usr/bin/env bash
# bench/cpu-vs-llamacpp.sh: orthod's CPU speed on the anchor rows of issue 3, side by side
# with llama.cpp's numbers (b10573, llama-bench, same random-weight shapes, mean of 3,
# measured by the project on 2026-11-28 on this machine type).
# usage: bench/cpu-vs-llamacpp.sh [BUILD_DIR] [REPETITIONS]   (prints a markdown table)
# The machine is shared and noisy: run it when idle; every number is a median.
set -euo pipefail
build=${1:-build}
reps=${2:-5}
orthod="$build/server/orthod"
[ -x "$orthod" ] || { echo "no $orthod: build first (meson setup $build && ninja -C $build)" >&2; exit 1; }

# shape dtype threads llama_pp llama_tg
rows=(
  "stories15M f32 1 5057 289"   "stories15M f32 2 10267 597"
  "stories15M f16 1 4774 366"   "stories15M f16 2 8784 610"
  "stories15M q8_0 1 4676 820"  "stories15M q8_0 2 8760 1245"
  "stories110M f16 1 474 49.1"  "stories110M f16 2 873 100.6"
  "stories110M q8_0 1 454 53.3" "stories110M q8_0 2 880 104.4"
)
echo "| shape, dtype | threads | orthod pp512 | llama.cpp pp512 | ratio | orthod tg128 | llama.cpp tg128 | ratio | orthod peak RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  read -r shape dtype thr lpp ltg <<<"$r"
  out=$("$orthod" bench --random-model "$shape" --dtype "$dtype" --threads "$thr" \
        --prompt-tokens 512 --gen-tokens 128 --repetitions "$reps" --json 2>/dev/null)
  pp=$(sed -E 's/.*"test":"pp512","tokens_per_second":([0-9.]+).*/\1/' <<<"$out")
  tg=$(sed -E 's/.*"test":"tg128","tokens_per_second":([0-9.]+).*/\1/' <<<"$out")
  rss=$(sed -E 's/.*"peak_rss_bytes":([0-9]+).*/\1/' <<<"$out")
  awk -v s="$shape $dtype" -v t="$thr" -v pp="$pp" -v lpp="$lpp" -v tg="$tg" -v ltg="$ltg" -v rss="$rss" \
    'BEGIN { printf "| %s | %s | %.0f | %s | %.2fx | %.1f | %s | %.2fx | %.0f MiB |\n", s, t, pp, lpp, pp/lpp, tg, ltg, tg/ltg, rss/1048576 }' 
done
