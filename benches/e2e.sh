#!/usr/bin/env bash
# End-to-end load test on loopback: a receiver, callgate, and oha at concurrency 32 for
# 20,000 requests, once in proxy mode and once in queued mode. Prints req/s, p50/p99
# latency, CPU µs per event (utime+stime of the callgate process, from /proc) and peak RSS
# (VmHWM). Each request is a distinct Oracle ISR notification (random call id in the URL),
# so the lifecycle tracker and the dedupe window do not short-cut any of them.
# Not run by CI: `bash benches/e2e.sh` (installs oha with cargo if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
C=${C:-32}
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet --bin callgate --example receiver

work=$(mktemp -d)
cleanup() { kill "${gw_pid:-}" "${rx_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
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
cpu() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }
depth() { curl -fs http://127.0.0.1:19090/metrics | awk '/^callgate_queue_depth /{print $2}'; }

run() {
  local mode=$1
  local before after start end
  before=$(cpu); start=$(date +%s.%N)
  oha -n "$N" -c "$C" --no-tui --output-format json -m GET \
    --rand-regex-url "http://127.0.0.1:18080/$mode/isr\?event=RECORDING_STARTED_EVENT&ISR_UCID=[a-z0-9]{20}&TMP_RECORDING_ID=[0-9]{9}" \
    > "$work/$mode.json"
  if [ "$mode" = queued ]; then
    # Sustained: until every queued message has been delivered.
    for _ in $(seq 600); do [ "$(depth)" = "0" ] && break; sleep 0.1; done
  fi
  end=$(date +%s.%N); after=$(cpu)
  python3 - "$work/$mode.json" "$mode" "$before" "$after" "$ticks" "$N" "$start" "$end" <<'PY'
import json, sys
path, mode, before, after, ticks, n, start, end = sys.argv[1:]
r = json.load(open(path))
s = r["summary"]; p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
cpu_us = (float(after) - float(before)) / float(ticks) * 1e6 / int(n)
print(f"{mode:7s} req/s {s['requestsPerSec']:9.0f}  p50 {p['p50']*1000:6.2f} ms  p99 {p['p99']*1000:6.2f} ms  "
      f"cpu {cpu_us:6.1f} µs/event  end-to-end {int(n)/(float(end)-float(start)):8.0f} events/s  statuses {codes}")
PY
}

run proxy
run queued
echo "peak RSS $(awk '/VmHWM/{print $2, $3}' /proc/$gw_pid/status)"
