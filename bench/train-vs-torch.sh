#!/bin/sh
# bench/train-vs-torch.sh: training throughput of `orthod train` against PyTorch (Debian
# python3-torch, float32, bench/train_torch.py) on the same model shape, batch and threads,
# interleaved in the same minutes (the machine is shared: ratios of medians, never a
# number from another run). Also the peak memory of a LoRA job (RSS high-water mark).
#
#   bench/train-vs-torch.sh BUILD_DIR [SHAPE] [THREADS] [ROUNDS] [METHODS]
#   e.g. bench/train-vs-torch.sh build-dev stories15M 2 3 "lora full"
#
# A step: 8 samples of 256 tokens (one 2048-token micro-batch), next-token CE over every
# token, backward, clipping at 1.0, AdamW. LoRA: rank 8, alpha 16, all seven targets.
# PyTorch calls the system BLAS (libblas.so.3): install libopenblas0-pthread, or it runs
# the netlib reference BLAS and the comparison means nothing (this script refuses then).
set -eu
BUILD=${1:?build dir}
SHAPE=${2:-stories15M}
THREADS=${3:-2}
ROUNDS=${4:-3}
METHODS=${5:-lora full}
HERE=$(cd "$(dirname "$0")" && pwd)
ORTHOD=$BUILD/server/orthod
MKMODEL=$BUILD/tests/mkmodel
TMP=$(mktemp -d /tmp/orthod-bench-train.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
*openblas*|*blis*|*mkl*) ;;
*) echo "train-vs-torch: the system BLAS is '$blas' (reference BLAS?): apt-get install libopenblas0-pthread" >&2; exit 1 ;;
esac

"$MKMODEL" "$TMP/model.gguf" --shape "$SHAPE" --dtype f32 --seed 1
# text for 256-token windows: the repository's own docs, repeated
for i in 1 2 3 4 5 6; do cat "$HERE"/../docs/*.md "$HERE"/../README.md; done > "$TMP/text.txt"

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'; }

for method in $METHODS; do
    o_all=""; t_all=""
    for r in $(seq 1 "$ROUNDS"); do
        rm -rf "$TMP/out"
        /usr/bin/time -f "%M" -o "$TMP/rss" "$ORTHOD" train --model "$TMP/model.gguf" \
            --data "$TMP/text.txt" --format text --max-seq-len 256 --batch 8 --micro-tokens 2048 \
            --max-steps 5 --method "$method" --lora-rank 8 --lr 1e-4 --threads "$THREADS" \
            --out "$TMP/out" --no-progress 2> "$TMP/o.log"
        o=$(grep '^step=' "$TMP/o.log" | tail -n +2 | sed 's/.*tokens_per_s=\([0-9]*\).*/\1/' | median)
        o_rss=$(( $(cat "$TMP/rss") / 1024 ))
        OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=$THREADS /usr/bin/time -f "%M" -o "$TMP/rss" \
            /usr/bin/python3 "$HERE/train_torch.py" --shape "$SHAPE" --method "$method" \
            --batch 8 --seq 256 --steps 2 --threads "$THREADS" > "$TMP/t.log" 2>&1
        t=$(grep '^torch step=' "$TMP/t.log" | tail -n +2 | sed 's/.*tokens_per_s=\([0-9]*\).*/\1/' | median)
        t_rss=$(( $(cat "$TMP/rss") / 1024 ))
        echo "round $r $method: orthod ${o} tok/s (peak RSS ${o_rss} MiB)  torch ${t} tok/s (peak RSS ${t_rss} MiB)"
        o_all="$o_all $o"; t_all="$t_all $t"
    done
    om=$(echo "$o_all" | tr ' ' '\n' | grep . | median)
    tm=$(echo "$t_all" | tr ' ' '\n' | grep . | median)
    echo "$SHAPE $method threads=$THREADS: orthod median ${om} tok/s, torch median ${tm} tok/s, ratio $(awk -v a="$om" -v b="$tm" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
done
