#!/bin/bash
# bench/soak.sh: a bounded soak of one `orthod serve`: normal clients (wrk on /health and
# an authenticated /v1/models), slow clients (partial requests held until conn-timeout
# answers 408), and malformed clients (tests/fuzz/fuzz_http in bursts), all at once. Every
# --interval seconds it records the daemon's RSS, open descriptors, open connections and
# the latency of GET /health on the main port and on the admin port into a CSV; at the
# end it prints the trend and fails (exit 1) if memory or descriptors grew, a probe
# failed, or the daemon did not exit 0 on SIGTERM.
#
#   bench/soak.sh [--seconds 3600] [--interval 10] [--build DIR] [--model GGUF] [--out DIR]
#
# Defaults: one hour, build-test-release (else build-dev) for orthod and fuzz_http, the
# stories260K model from ../shared (ORTHOD_SHARED), results in a new /tmp directory
# (printed). Needs wrk and curl (deploy/deps.sh). Everything it starts is stopped when it
# ends, however it ends.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
secs=3600
interval=10
build=""
model="${ORTHOD_SHARED:-$src/../shared}/models/stories260K.gguf"
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) secs=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$build" ]; then
    for b in build-test-release build-dev; do
        [ -x "$src/$b/server/orthod" ] && [ -x "$src/$b/tests/fuzz_http" ] && { build=$src/$b; break; }
    done
fi
[ -n "$build" ] || { echo "soak.sh: no build with server/orthod and tests/fuzz_http (--build)" >&2; exit 2; }
[ -f "$model" ] || { echo "soak.sh: model $model not found" >&2; exit 2; }
command -v wrk >/dev/null && command -v curl >/dev/null || { echo "soak.sh: needs wrk and curl" >&2; exit 2; }
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/orthod-soak-XXXXXX")}
mkdir -p "$out"

jobs_pids=()
daemon=""
stop_all() {
    for p in "${jobs_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(free_port)
admin=$(free_port)
key="fuzz-key-0123456789abcdef0123456789"    # the key tests/fuzz/fuzz_http sends
printf '%s admin\n' "$key" > "$out/keys"
chmod 600 "$out/keys"
"$build/server/orthod" serve --model "$model" --host 127.0.0.1 --port "$port" \
    --admin-listen "127.0.0.1:$admin" --api-key-file "$out/keys" --conn-timeout 5s \
    --max-connections 256 --log-level warn > "$out/orthod.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "soak.sh: daemon not ready" >&2; cat "$out/orthod.log" >&2; exit 1; }
echo "soak.sh: pid $daemon port $port admin $admin, ${secs}s, results in $out"
end=$(( $(date +%s) + secs ))

# normal clients
wrk -t1 -c8 -d "${secs}s" -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/models" \
    > "$out/wrk-models.txt" 2>&1 &
jobs_pids+=($!)
wrk -t1 -c4 -d "${secs}s" "http://127.0.0.1:$port/health" > "$out/wrk-health.txt" 2>&1 &
jobs_pids+=($!)

# slow clients: 8 at a time send half a request and wait for the 408
(
    while [ "$(date +%s)" -lt "$end" ]; do
        for _ in 1 2 3 4 5 6 7 8; do
            (
                exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
                printf 'GET /health HTTP/1.1\r\nHost: soak\r\nX-Slow: ' >&3
                timeout 30 head -c 4096 <&3 > /dev/null 2>&1 || true
            ) &
        done
        wait
    done
) > /dev/null 2>&1 &
jobs_pids+=($!)

# malformed clients: 20 s bursts of the HTTP fuzzer, 10 s apart
(
    n=0
    while [ $(( $(date +%s) + 20 )) -lt "$end" ]; do
        n=$((n + 1))
        "$build/tests/fuzz_http" --port "$port" --seconds 20 --seed "$n" \
            --artifacts "$out" --corpus "$src/tests/fuzz/corpus/http" >> "$out/fuzz.txt" 2>&1 ||
            echo "burst $n FAILED" >> "$out/fuzz-failures.txt"
        sleep 10
    done
) &
jobs_pids+=($!)

# the samples
echo "t_s,rss_kib,fds,connections,health_ms,admin_health_ms" > "$out/samples.csv"
t0=$(date +%s)
probe_fail=0
while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$daemon" 2>/dev/null || { echo "soak.sh: the daemon died" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")
    fds=$(ls "/proc/$daemon/fd" | wc -l)
    conns=$(curl -s --max-time 10 "http://127.0.0.1:$admin/metrics" |
            awk '/^orthod_http_connections / {print $2}')
    h=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 "http://127.0.0.1:$port/health" || true)
    a=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 "http://127.0.0.1:$admin/health" || true)
    [ "${a%% *}" = 200 ] || probe_fail=$((probe_fail + 1))
    hm=$(echo "$h" | awk '$1 == 200 {printf "%.2f", $2 * 1000; next} {print "fail"}')
    am=$(echo "$a" | awk '$1 == 200 {printf "%.2f", $2 * 1000; next} {print "fail"}')
    echo "$(( $(date +%s) - t0 )),$rss,$fds,${conns:-?},$hm,$am" >> "$out/samples.csv"
    sleep "$interval"
done

for p in "${jobs_pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${jobs_pids[@]}" 2>/dev/null || true
jobs_pids=()
sleep 6    # conn-timeout: the last slow clients are closed
rss_end=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")
fds_end=$(ls "/proc/$daemon/fd" | wc -l)
kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=""

# the trend: first and last tenth of the samples, the worst, and the probes' latency
python3 - "$out/samples.csv" "$rss_end" "$fds_end" "$status" "$probe_fail" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rss_end, fds_end, status, probe_fail = (int(x) for x in sys.argv[2:6])
k = max(1, len(rows) // 10)
first, last = rows[:k], rows[-k:]
med = lambda rs, f: statistics.median(float(r[f]) for r in rs)
lat = sorted(float(r[f]) for r in rows for f in ("health_ms", "admin_health_ms") if r[f] != "fail")
fails = sum(r[f] == "fail" for r in rows for f in ("health_ms", "admin_health_ms"))
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
print(f"samples {len(rows)}; rss KiB first {med(first,'rss_kib'):.0f} last {med(last,'rss_kib'):.0f} "
      f"max {max(float(r['rss_kib']) for r in rows):.0f} after {rss_end}; fds first "
      f"{med(first,'fds'):.0f} last {med(last,'fds'):.0f} max {max(int(r['fds']) for r in rows)} "
      f"after {fds_end}; /health ms p50 {p(0.5):.2f} p99 {p(0.99):.2f} max {p(1):.2f}, "
      f"{fails} failed (admin {probe_fail}); exit {status}")
bad = []
if med(last, "rss_kib") > med(first, "rss_kib") * 1.2 + 16384:
    bad.append("memory grew")
if fds_end > med(first, "fds") + 4:
    bad.append("descriptors grew")
if probe_fail:
    bad.append("the admin /health failed")
if status != 0:
    bad.append("exit status not 0")
if bad:
    print("soak.sh: FAILED: " + ", ".join(bad))
    sys.exit(1)
EOF
if [ -s "$out/fuzz-failures.txt" ]; then
    echo "soak.sh: FAILED: fuzz bursts: $(cat "$out/fuzz-failures.txt" | tr '\n' ' ')" >&2
    exit 1
fi
grep -h 'Requests/sec' "$out"/wrk-*.txt | sed 's/^/soak.sh: wrk /'
echo "soak.sh: passed; samples in $out/samples.csv"
