#!/usr/bin/env bash
# End-to-end load test on loopback: a receiver, callgate, and oha at concurrency 32 for
# 20,000 requests, once in proxy mode and once in queued mode. Prints req/s, p50/p99
# latency, CPU µs per event (utime+stime of the callgate process, from /proc) and peak RSS
# (VmHWM). Each request is a distinct Oracle ISR notification (random call id in the URL),
# so the lifecycle tracker and the dedupe window do not short-cut any of them.
# `bash benches/e2e.sh nats` also starts nats-server (JetStream, scratch folder) and a second
# callgate on the NATS store, and runs the queued mode against it right after SQLite's,
# printing the throughput ratio (the target: NATS ≥ 70% of SQLite with one instance).
# Not run by CI: `bash benches/e2e.sh [nats]` (installs oha with cargo if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
C=${C:-32}
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet --bin callgate --example receiver

work=$(mktemp -d)
cleanup() { kill "${gw_pid:-}" "${nats_gw_pid:-}" "${nats_pid:-}" "${rx_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/receiver 127.0.0.1:18081 & rx_pid=$!

cat > "$work/callgate.yaml" <<YAML
server: { listen: 127.0.0.1:18080, admin_listen: 127.0.0.1:19090 }
mappings: $PWD/mappings
store: { kind: sqlite, path: $work/callgate.db }
delivery: { retry: [0s, 1s, 5s], timeout: 5s }
routes:
  - { name: proxy, path: /proxy/isr, from: oracle-isr, ack: proxy, to: [ { name: ce, vendor: cloudevents, url: "http://127.0.0.1:18081/events" } ] }
  - { name: queued, path: /queued/isr, from: oracle-isr, ack: queued, to: [ { name: ce, vendor: cloudevents, url: "http://127.0.0.1:18081/events" } ] }
YAML
CALLGATE_LOG=warn ./target/release/callgate serve --config "$work/callgate.yaml" & gw_pid=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
depth() { curl -fs "http://127.0.0.1:$1/metrics" | awk '/^callgate_queue_depth /{print $2}'; }

# run <label> <mode> <port> <admin port> <pid>
run() {
  local label=$1 mode=$2 port=$3 admin=$4 pid=$5
  local before after start end
  before=$(cpu "$pid"); start=$(date +%s.%N)
  oha -n "$N" -c "$C" --no-tui --output-format json -m GET \
    --rand-regex-url "http://127.0.0.1:$port/$mode/isr\?event=RECORDING_STARTED_EVENT&ISR_UCID=[a-z0-9]{20}&TMP_RECORDING_ID=[0-9]{9}" \
    > "$work/$label.json"
  if [ "$mode" = queued ]; then
    # Sustained: until every queued message has been delivered.
    for _ in $(seq 600); do [ "$(depth "$admin")" = "0" ] && break; sleep 0.1; done
  fi
  end=$(date +%s.%N); after=$(cpu "$pid")
  python3 - "$work/$label.json" "$label" "$before" "$after" "$ticks" "$N" "$start" "$end" <<'PY' | tee -a "$work/results"
import json, sys
path, label, before, after, ticks, n, start, end = sys.argv[1:]
r = json.load(open(path))
s = r["summary"]; p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
cpu_us = (float(after) - float(before)) / float(ticks) * 1e6 / int(n)
print(f"{label:13s} req/s {s['requestsPerSec']:9.0f}  p50 {p['p50']*1000:6.2f} ms  p99 {p['p99']*1000:6.2f} ms  "
      f"cpu {cpu_us:6.1f} µs/event  end-to-end {int(n)/(float(end)-float(start)):8.0f} events/s  statuses {codes}")
PY
}

run proxy proxy 18080 19090 "$gw_pid"
run queued queued 18080 19090 "$gw_pid"
echo "peak RSS $(awk '/VmHWM/{print $2, $3}' /proc/$gw_pid/status)"

if [ "${1:-}" = nats ]; then
  mkdir -p "$work/nats"
  nats-server -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >/dev/null 2>&1 & nats_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
  sed -e "s|store: .*|store: { kind: nats, url: 'nats://127.0.0.1:14222', stream: BENCH }|" \
      -e "s|127.0.0.1:18080|127.0.0.1:18082|; s|127.0.0.1:19090|127.0.0.1:19092|" \
      "$work/callgate.yaml" > "$work/callgate-nats.yaml"
  CALLGATE_LOG=warn ./target/release/callgate serve --config "$work/callgate-nats.yaml" & nats_gw_pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:18082/readyz >/dev/null && break; sleep 0.1; done
  run nats-queued queued 18082 19092 "$nats_gw_pid"
  # Side by side in one invocation: SQLite queued again, then the ratio.
  run queued-again queued 18080 19090 "$gw_pid"
  python3 - "$work/results" <<'PY'
import re, sys
rates = {}
for line in open(sys.argv[1]):
    label = line.split()[0]
    rates[label] = float(re.search(r"end-to-end +([0-9.]+)", line).group(1))
sqlite = (rates["queued"] + rates["queued-again"]) / 2
print(f"NATS / SQLite queued end-to-end throughput: {rates['nats-queued'] / sqlite:.2f}")
PY
fi
