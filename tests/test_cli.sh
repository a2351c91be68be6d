#!/bin/sh
# tests/test_cli.sh: the orthod command line: --version/--help, unknown commands and flags
# (one line naming the flag, exit 2), bad values, and `orthod config` (flags beat the file,
# file errors name file:line). Usage: test_cli.sh PATH/TO/orthod
set -u
ORTHOD=${1:?usage: test_cli.sh PATH/TO/orthod}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# expect STATUS NEEDLE -- ARGS...: runs orthod ARGS, checks the exit status, and that NEEDLE
# appears in stdout+stderr; for status 2, that stderr is exactly one line.
expect() {
    want=$1 needle=$2
    shift 3
    "$ORTHOD" "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: orthod $*: exit $got, want $want"; cat "$TMP/err"; fails=$((fails + 1)); return
    fi
    if ! cat "$TMP/out" "$TMP/err" | grep -qF -- "$needle"; then
        echo "FAIL: orthod $*: output lacks '$needle'"; cat "$TMP/out" "$TMP/err"
        fails=$((fails + 1)); return
    fi
    if [ "$want" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
        echo "FAIL: orthod $*: usage errors must be one line:"; cat "$TMP/err"
        fails=$((fails + 1)); return
    fi
    echo "ok: orthod $*"
}

expect 0 "orthod 0." -- --version
expect 0 "features: server=yes" -- --version
expect 0 "serve" -- --help
expect 2 "missing command" --
expect 2 "unknown command 'bogus'" -- bogus
expect 2 "unknown flag --bogus" -- --bogus
expect 2 "--bogus" -- serve --bogus
expect 2 "--port" -- serve --model x.gguf --port 99999
expect 2 "--port" -- serve --model x.gguf --port eighty
expect 2 "--max-body-bytes" -- serve --model x.gguf --max-body-bytes lots
expect 2 "--device" -- serve --model x.gguf --device tpu
expect 2 "--model is required" -- serve
expect 2 "unexpected argument 'extra'" -- serve --model x.gguf extra
expect 0 "--max-body-bytes" -- serve --help
expect 0 "port = 9" -- config --port 9
expect 0 "max-body-bytes = 8388608" -- config
expect 2 "--bogus" -- config --bogus
expect 2 "--bogus" -- generate --bogus
expect 2 "--bogus" -- tokenize --bogus
expect 2 "--bogus" -- bench --bogus
expect 2 "--save writes the --random-model" -- bench --model x.gguf --save "$TMP/x.gguf"

# bench --save writes the random model; the file loads and benchmarks at a depth
expect 0 "tg4 @ d40" -- bench --random-model tiny --dtype q8_0 --save "$TMP/tiny.gguf" \
    --prompt-tokens 8 --gen-tokens 4 --depth 40 --repetitions 1 --threads 1
expect 0 '"depth":40' -- bench --model "$TMP/tiny.gguf" --prompt-tokens 8 --gen-tokens 4 \
    --depth 40 --batch 2 --repetitions 1 --threads 1 --json
# the depth is really in the cache: 40 + 4 tokens do not fit a 42-token context, 44 do
expect 1 "decode failed: too large" -- bench --model "$TMP/tiny.gguf" --prompt-tokens 0 \
    --gen-tokens 4 --depth 40 --ctx-size 42 --repetitions 1 --threads 1
expect 0 "tg4 @ d40" -- bench --model "$TMP/tiny.gguf" --prompt-tokens 0 --gen-tokens 4 \
    --depth 40 --ctx-size 44 --repetitions 1 --threads 1
expect 0 '"dtype":"q8_0"' -- bench --model "$TMP/tiny.gguf" --prompt-tokens 0 --gen-tokens 2 \
    --repetitions 1 --threads 1 --json

printf 'port = 9100\nhost = ::1\n' >"$TMP/good.conf"
expect 0 "port = 9200" -- config --config "$TMP/good.conf" --port 9200
expect 0 "host = ::1" -- config --port 9200 --config "$TMP/good.conf"
printf '# ok\nport = 1\n\nmystery = 3\n' >"$TMP/bad.conf"
expect 2 "$TMP/bad.conf:4: unknown key 'mystery'" -- config --config "$TMP/bad.conf"
expect 2 "$TMP/bad.conf:4: unknown key 'mystery'" -- serve --model x.gguf --config "$TMP/bad.conf"
expect 2 "cannot open config file" -- config --config "$TMP/missing.conf"

# the README's example config documents every key and loads as is
if [ -n "${ORTHOD_SOURCE_ROOT:-}" ]; then
    expect 0 "port = 8080" -- config --config "$ORTHOD_SOURCE_ROOT/etc/orthod.conf"
fi

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all CLI checks passed"
