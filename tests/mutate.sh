#!/bin/sh
# tests/mutate.sh: measures the suite's strength: injects one mutation at a time into the
# source (a small, plausible bug), rebuilds, runs the tests, records whether any failed
# ("caught") or all passed ("SURVIVED"), and restores the file. Prints a table and the score.
#   tests/mutate.sh BUILD_DIR [NAME...]      (default: every mutation below)
#   MUTATE_TESTS="logits faults" tests/mutate.sh build-dev   (run only these meson tests)
# BUILD_DIR is a configured meson build of this tree (e.g. build-dev); by default the
# suites engine and unit run (meson test --suite engine --suite unit). Files are restored
# on exit, even on Ctrl-C; a mutation whose pattern no longer matches is reported "stale"
# (update its pattern). Takes a few minutes per mutation on two cores.
set -u
cd "$(dirname "$0")/.." || exit 2
BUILD=${1:?usage: tests/mutate.sh BUILD_DIR [NAME...]}
shift
[ -f "$BUILD/build.ninja" ] || { echo "tests/mutate.sh: $BUILD is not a meson build dir" >&2; exit 2; }
TMP=$(mktemp -d)
SAVED=""
restore() {
    if [ -n "$SAVED" ]; then
        cp "$TMP/saved" "$SAVED"
        SAVED=""
    fi
}
trap 'restore; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# name|file|perl substitution, applied to the first line it matches (no '|' in it: write
# \x7c in a pattern)|what it breaks
MUTATIONS='rmsnorm-eps|engine/forward.c|s/hp->rms_eps\)\);/0.0f));/|RMSNorm without its epsilon
attn-scale|engine/forward.c|s#1\.0f / sqrtf\(\(float\)hp->head_dim\)#1.0f / (float)hp->head_dim#|attention scale 1/d instead of 1/sqrt(d)
rope-theta|engine/cpu/backend_cpu.c|s#-2\.0 \* i / rp->n_rot#-2.0 * i / (rp->n_rot + 2)#|RoPE frequencies off
q4-nibbles|engine/cpu/matmul.c|s/\(\(blk\[2 \+ j\] >> 4\) - 8\)/((blk[2 + j] \& 0x0F) - 8)/|Q4_0 high nibble read as the low one (scalar oracle)
q8-round|engine/cpu/matmul.c|s/\(int8_t\)roundf\(v\)/(int8_t)truncf(v)/|Q8_0 activations truncated instead of rounded (scalar oracle)
causal-mask|engine/cpu/attention.c|s/p <= st->pos\[t\]; p\+\+/p < st->pos[t] + (st->pos[t] == 0); p++/|attention skips the token itself
fp16-round|engine/tensor.c|s/if \(rem > 0x1000 /if (rem > 0x1fff /|FP32 to FP16 rounds down all but exact ties
top-k|engine/sampler.c|s/p->top_k < V \? p->top_k : V/p->top_k < V ? p->top_k + 1 : V/|top-k keeps one token too many
step-rollback|engine/ctx.c|s/eng_ctx_seq_truncate\(c, s, c->seq_len\[s\] - added\);/(void)added;/|a failed step keeps its tokens
gguf-align|engine/format/gguf_read.c|s/if \(t->offset % g->alignment\)/if (0)/|misaligned tensor offsets accepted
spm-ties|engine/tok/spm.c|s/x->score == y->score && x->left < y->left/x->score == y->score \&\& x->left > y->left/|SPM merges of equal score taken rightmost first
unit-key|deploy/orthod.service|s/^RestartSec=2s/RestartSec=two/|an unparsable value in the systemd unit
module-build-id|gpu/loader.c|s/strcmp\(m->build, GPU_MODULE_BUILD\) == 0/1/|a CUDA module from another build accepted'

only="$*"
: >"$TMP/table"
row() {   # NAME RESULT TEXT: one line of the table, on stdout and in $TMP/table
    printf '%-16s %-9s %s\n' "$1" "$2" "$3" | tee -a "$TMP/table"
}
printf '%-16s %-9s %s\n' mutation result "failing tests (what it breaks)"
printf '%s\n' "$MUTATIONS" >"$TMP/list"
while IFS='|' read -r name file subst what; do
    if [ -n "$only" ] && ! echo " $only " | grep -q " $name "; then
        continue
    fi
    cp "$file" "$TMP/saved"
    SAVED=$file
    perl -pi -e "\$done ||= ($subst)" "$file"
    if cmp -s "$file" "$TMP/saved"; then
        restore
        row "$name" stale "the pattern no longer matches $file"
        continue
    fi
    if ! ninja -C "$BUILD" >"$TMP/build.log" 2>&1; then
        restore
        row "$name" no-build "($what) does not compile: fix the mutation"
        continue
    fi
    # shellcheck disable=SC2086  # MUTATE_TESTS is a list of test names
    if [ -n "${MUTATE_TESTS:-}" ]; then
        meson test -C "$BUILD" --no-rebuild --num-processes 2 $MUTATE_TESTS >"$TMP/test.log" 2>&1
    else
        meson test -C "$BUILD" --no-rebuild --num-processes 2 --suite engine --suite unit \
            >"$TMP/test.log" 2>&1
    fi
    failing=$(grep -E '^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT|ERROR) ' "$TMP/test.log" |
        sed -E 's|^ *[0-9]+/[0-9]+ [^ ]+ / ([^ ]+) .*|\1|' | tr '\n' ' ')
    restore
    if [ -n "$failing" ]; then
        row "$name" caught "$failing($what)"
    else
        row "$name" SURVIVED "($what)"
    fi
done <"$TMP/list"
ninja -C "$BUILD" >/dev/null 2>&1 || echo "tests/mutate.sh: the restored tree does not build" >&2
n=$(grep -cE ' (caught|SURVIVED) ' "$TMP/table")
caught=$(grep -c ' caught ' "$TMP/table")
echo "score: $caught of $n mutations caught"
[ "$caught" -eq "$n" ]
