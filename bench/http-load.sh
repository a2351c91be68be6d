#!/bin/sh
# bench/http-load.sh: throughput and latency of orthod's HTTP front end under wrk, for
# GET /health (a probe) and GET /v1/models (an authenticated route), with no errors and
# flat memory as the bar. With --base, a second orthod binary (e.g. built from main) is
# measured in the same minutes, interleaved round by round, and the ratios are printed:
# a number from another day does not count on a shared machine.
#
#   bench/http-load.sh [--orthod BIN] [--base BIN] [--model GGUF] [--rounds 3]
#                      [--seconds 10] [--connections 64] [--threads 2]
#
# Defaults: BIN build-test-release/server/orthod (else build-dev), the stories260K model
# from ../shared (ORTHOD_SHARED). Both daemons run with --log-level warn (no access log
# line per request), api keys on, everything else default. Needs wrk (deploy/deps.sh).
# Output: one line per run, then per binary and path the median req/s, p50/p99 latency
# (of the median run), non-2xx responses and socket errors summed, and the lowest and
# highest RSS seen around the runs; exit 1 on any error response or socket error.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
orthod=""
base=""
model="${ORTHOD_SHARED:-$src/../shared}/models/stories260K.gguf"
rounds=3
secs=10
conns=64
threads=2
while [ $# -gt 0 ]; do
    case "$1" in
    --orthod) orthod=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "http-load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$orthod" ]; then
    for b in build-test-release build-dev; do
        [ -x "$src/$b/server/orthod" ] && { orthod=$src/$b/server/orthod; break; }
    done
fi
[ -n "$orthod" ] && [ -x "$orthod" ] || { echo "http-load.sh: no orthod binary (--orthod)" >&2; exit 2; }
[ -f "$model" ] || { echo "http-load.sh: model $model not found" >&2; exit 2; }
command -v wrk >/dev/null || { echo "http-load.sh: wrk not installed (deploy/deps.sh)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/orthod-http-load-XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
key=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
printf '%s inference\n' "$key" > "$work/keys"
chmod 600 "$work/keys"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME BIN: runs a daemon, waits for /ready, sets $port_NAME and $pid_NAME
start() {
    p=$(free_port)
    "$2" serve --model "$model" --host 127.0.0.1 --port "$p" --api-key-file "$work/keys" \
        --log-level warn > "$work/$1.log" 2>&1 &
    pid=$!
    pids="$pids $pid"
    i=0
    until curl -sf "http://127.0.0.1:$p/ready" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 300 ] || { echo "http-load.sh: $1 did not become ready" >&2; cat "$work/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    eval "port_$1=$p pid_$1=$pid"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

start new "$orthod"
names="new"
if [ -n "$base" ]; then
    start base "$base"
    names="new base"
fi

# one wrk run: NAME PATH -> appends "name path rps p50_us p99_us non2xx sockerr rss0 rss1"
run() {
    eval "p=\$port_$1 pid=\$pid_$1"
    r0=$(rss_kib "$pid")
    wrk -t "$threads" -c "$conns" -d "${secs}s" --latency -H "Authorization: Bearer $key" \
        "http://127.0.0.1:$p$2" > "$work/wrk.out" 2>&1
    r1=$(rss_kib "$pid")
    awk -v name="$1" -v path="$2" -v r0="$r0" -v r1="$r1" '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000;
                         if (v ~ /s$/) return v * 1000000; return v }
        /Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        /Non-2xx or 3xx responses:/ { non2xx = $5 }
        /Socket errors:/ { gsub(/,/, ""); sockerr = $4 + $6 + $8 + $10 }
        END { printf "%s %s %.0f %.0f %.0f %d %d %d %d\n", name, path, rps, p50, p99,
              non2xx + 0, sockerr + 0, r0, r1 }' "$work/wrk.out" >> "$work/results"
    tail -n 1 "$work/results"
}

echo "# name path req/s p50_us p99_us non2xx sock_errors rss_before_kib rss_after_kib"
echo "# $conns connections, $threads wrk threads, ${secs}s per run, $rounds rounds"
r=1
while [ $r -le "$rounds" ]; do
    # alternate which binary goes first, so that neither always gets the cooler minute
    order=$names
    [ $((r % 2)) -eq 0 ] && [ -n "$base" ] && order="base new"
    for n in $order; do
        for path in /health /v1/models; do
            run "$n" "$path"
        done
    done
    r=$((r + 1))
done

echo "# medians"
sort -k1,1 -k2,2 -k3,3n "$work/results" | awk '
    { key = $1 " " $2; n[key]++; v[key, n[key]] = $3; p50[key, n[key]] = $4; p99[key, n[key]] = $5;
      err[key] += $6 + $7
      if (!(key in lo) || $8 < lo[key]) lo[key] = $8
      if ($9 > hi[key]) hi[key] = $9 }
    END {
        for (k in n) {
            m = int((n[k] + 1) / 2)
            printf "%-16s median %8.0f req/s  p50 %6.0f us  p99 %7.0f us  errors %d  rss %d..%d KiB\n",
                   k, v[k, m], p50[k, m], p99[k, m], err[k], lo[k], hi[k]
            med[k] = v[k, m]
        }
        for (k in n) if (k ~ /^new /) { b = k; sub(/^new /, "base ", b)
            if (b in med) printf "ratio new/base %-12s %.3f\n", substr(k, 5), med[k] / med[b] }
    }' | sort
errors=$(awk '{ e += $6 + $7 } END { print e + 0 }' "$work/results")
[ "$errors" -eq 0 ] || { echo "http-load.sh: $errors error responses or socket errors" >&2; exit 1; }
