#!/usr/bin/env bash
# End-to-end load on loopback, side by side in one invocation. Not run by CI.
#
#   bash benches/e2e.sh [rounds]      # proxy and queued, `rounds` (default 3) of each
#   bash benches/e2e.sh nats          # also the queued mode on NATS JetStream
#   bash benches/e2e.sh archive       # also proxy and queued with `archive.retention: 0s`
#                                     # (what keeping the archive costs, side by side)
#   bash benches/e2e.sh fixed         # also baseline and proxy at one fixed offered rate
#                                     # both sustain (RATE, default 4000 req/s): wrk paces
#                                     # each connection with delay() = C / RATE
#
# Side by side, each pinned to core 0 (taskset) while wrk (one thread, concurrency $C) and
# the loopback receiver share core 1:
#   baseline  benches/baseline.rs: hyper server + client, typed serde RingCentral → Vidyo
#   proxy     callgate, route `ack: proxy` RingCentral → Vidyo (synchronous forward)
# Then the queued mode as deployed, on the whole machine (nothing pinned): a second callgate
# whose route has `ack: queued` (SQLite store, then delivery), and with `nats` a third on
# NATS JetStream.
#   queued       callgate, RingCentral → Vidyo, SQLite
#   nats-queued  the same on NATS JetStream
# Every request is a distinct RingCentral telephony-session notification (benches/e2e/
# ringcentral.lua). Rounds alternate the peers, so a noisy neighbour hits both alike. Per run:
# req/s, p50/p99 (wrk), CPU µs per event (utime+stime of the peer from /proc over the run),
# RSS at idle (before the first run) and peak (VmHWM). For queued: the backlog left when the
# load stops, the end-to-end rate until it is drained, and the store's commands per commit.
# The summary gives medians over the rounds and callgate / baseline ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
NATS=""
ARCHIVE=""
FIXED=""
RATE=${RATE:-4000}
for arg in "$@"; do
  case $arg in
    nats) NATS=1 ;;
    archive) ARCHIVE=1 ;;
    fixed) FIXED=1 ;;
    [0-9]*) ROUNDS=$arg ;;
    *) echo "usage: bash benches/e2e.sh [rounds] [nats] [archive] [fixed]" >&2; exit 2 ;;
  esac
done
C=${C:-32}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin callgate --example receiver --example baseline

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

taskset -c 1 ./target/release/examples/receiver 127.0.0.1:18081 & pids+=($!)
wait_port 18081

taskset -c 0 ./target/release/examples/baseline 127.0.0.1:18090 http://127.0.0.1:18081/vidyo & baseline_pid=$!; pids+=($baseline_pid)

cat > "$work/callgate.yaml" <<YAML
server: { listen: 127.0.0.1:18080, admin_listen: 127.0.0.1:19090 }
mappings: $PWD/mappings
store: { kind: sqlite, path: $work/callgate.db }
delivery: { retry: [0s, 1s, 5s], timeout: 5s }
routes:
  - { name: proxy, path: /proxy/rc, from: ringcentral, ack: proxy, to: [ { name: vidyo, vendor: vidyo, url: "http://127.0.0.1:18081/vidyo" } ] }
  - { name: queued, path: /queued/rc, from: ringcentral, ack: queued, to: [ { name: vidyo, vendor: vidyo, url: "http://127.0.0.1:18081/vidyo" } ] }
YAML
CALLGATE_LOG=warn taskset -c 0 ./target/release/callgate serve --config "$work/callgate.yaml" & gw_pid=$!; pids+=($gw_pid)
sed -e "s|127.0.0.1:18080|127.0.0.1:18083|; s|127.0.0.1:19090|127.0.0.1:19093|; s|callgate.db|queued.db|" \
    "$work/callgate.yaml" > "$work/callgate-queued.yaml"
CALLGATE_LOG=warn ./target/release/callgate serve --config "$work/callgate-queued.yaml" & queued_pid=$!; pids+=($queued_pid)
wait_port 18090; wait_port 18080; wait_port 18083

if [ -n "$ARCHIVE" ]; then
  # The same two routes without the archive: proxy pinned like the other, queued unpinned.
  { sed -e "s|127.0.0.1:18080|127.0.0.1:18084|; s|127.0.0.1:19090|127.0.0.1:19094|; s|callgate.db|noarchive.db|" \
      "$work/callgate.yaml"; echo "archive: { retention: 0s }"; } > "$work/callgate-noarchive.yaml"
  CALLGATE_LOG=warn taskset -c 0 ./target/release/callgate serve --config "$work/callgate-noarchive.yaml" & noarchive_pid=$!; pids+=($noarchive_pid)
  { sed -e "s|127.0.0.1:18080|127.0.0.1:18085|; s|127.0.0.1:19090|127.0.0.1:19095|; s|callgate.db|noarchive-queued.db|" \
      "$work/callgate.yaml"; echo "archive: { retention: 0s }"; } > "$work/callgate-noarchive-queued.yaml"
  CALLGATE_LOG=warn ./target/release/callgate serve --config "$work/callgate-noarchive-queued.yaml" & noarchive_queued_pid=$!; pids+=($noarchive_queued_pid)
  wait_port 18084; wait_port 18085
fi

if [ -n "$NATS" ]; then
  mkdir -p "$work/nats"
  nats-server -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >/dev/null 2>&1 & pids+=($!)
  wait_port 14222
  sed -e "s|store: .*|store: { kind: nats, url: 'nats://127.0.0.1:14222', stream: BENCH }|" \
      -e "s|127.0.0.1:18080|127.0.0.1:18082|; s|127.0.0.1:19090|127.0.0.1:19092|" \
      "$work/callgate.yaml" > "$work/callgate-nats.yaml"
  CALLGATE_LOG=warn ./target/release/callgate serve --config "$work/callgate-nats.yaml" & nats_gw_pid=$!; pids+=($nats_gw_pid)
  wait_port 18082
fi

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
metric() { curl -fs "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {s += $2} END {print s + 0}'; }

echo "idle RSS: baseline $(kib $baseline_pid VmRSS) KiB, callgate $(kib $gw_pid VmRSS) KiB" | tee "$work/idle"
idle_baseline=$(kib $baseline_pid VmRSS); idle_callgate=$(kib $gw_pid VmRSS)

# load <url> <seconds> [cores]: wrk (on core 1 unless told), its JSON line on stdout.
# With DELAY_MS set, each connection waits that long before each request (a paced load).
load() {
  RUN_ID="r$RANDOM$RANDOM" taskset -c "${3:-1}" wrk -t1 -c"$C" -d"$2s" -s benches/e2e/ringcentral.lua "$1" | tail -n 1
}

# run <label> <url> <pid> [admin port]: one measured run, appended to $work/runs as JSON.
run() {
  local label=$1 url=$2 pid=$3 admin=${4:-}
  local before after start end wrk_json backlog=0 commits=0 commands=0
  if [ -n "$admin" ]; then commits=$(metric "$admin" callgate_store_commits_total); commands=$(metric "$admin" callgate_store_commit_commands_total); fi
  before=$(cpu "$pid"); start=$(date +%s.%N)
  # A queued peer runs on the whole machine, and so does its load.
  wrk_json=$(load "$url" "$SECONDS_PER_RUN" "$([ -n "$admin" ] && echo 0,1 || echo 1)")
  if [ -n "$admin" ]; then
    backlog=$(metric "$admin" callgate_queue_depth)
    # Sustained: the run ends when every queued message has been delivered.
    for _ in $(seq 1200); do [ "$(metric "$admin" callgate_queue_depth)" = "0" ] && break; sleep 0.05; done
    commits=$(( $(metric "$admin" callgate_store_commits_total) - commits ))
    commands=$(( $(metric "$admin" callgate_store_commit_commands_total) - commands ))
  fi
  end=$(date +%s.%N); after=$(cpu "$pid")
  python3 - "$label" "$wrk_json" "$before" "$after" "$ticks" "$start" "$end" "$backlog" "$commits" "$commands" "$(kib "$pid" VmHWM)" <<'PY' | tee -a "$work/runs"
import json, sys
label, wrk, before, after, ticks, start, end, backlog, commits, commands, hwm = sys.argv[1:]
w = json.loads(wrk)
n = w["requests"]
row = {
    "peer": label,
    "rps": n / (w["duration_us"] / 1e6),
    "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
    "cpu_us": (float(after) - float(before)) / float(ticks) * 1e6 / max(n, 1),
    "failed": w["errors"] + w["non_2xx"],
    "peak_rss_kib": int(hwm),
    "end_to_end": n / (float(end) - float(start)),
    "backlog": int(float(backlog)),
    "per_commit": int(commands) / int(commits) if int(commits) else 0,
}
print(json.dumps(row))
PY
}

echo "warm-up"
load http://127.0.0.1:18090/ 2 >/dev/null
load http://127.0.0.1:18080/proxy/rc 2 >/dev/null
load http://127.0.0.1:18083/queued/rc 2 0,1 >/dev/null
for _ in $(seq 1200); do [ "$(metric 19093 callgate_queue_depth)" = "0" ] && break; sleep 0.05; done
if [ -n "$ARCHIVE" ]; then
  load http://127.0.0.1:18084/proxy/rc 2 >/dev/null
  load http://127.0.0.1:18085/queued/rc 2 0,1 >/dev/null
  for _ in $(seq 1200); do [ "$(metric 19095 callgate_queue_depth)" = "0" ] && break; sleep 0.05; done
fi

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS"
  run baseline http://127.0.0.1:18090/ "$baseline_pid"
  run proxy http://127.0.0.1:18080/proxy/rc "$gw_pid"
  run queued http://127.0.0.1:18083/queued/rc "$queued_pid" 19093
  if [ -n "$NATS" ]; then run nats-queued http://127.0.0.1:18082/queued/rc "$nats_gw_pid" 19092; fi
  if [ -n "$ARCHIVE" ]; then
    run proxy-no-archive http://127.0.0.1:18084/proxy/rc "$noarchive_pid"
    run queued-no-archive http://127.0.0.1:18085/queued/rc "$noarchive_queued_pid" 19095
  fi
  if [ -n "$FIXED" ]; then
    # C connections each waiting C / RATE seconds between requests offer about RATE req/s.
    export DELAY_MS=$(( C * 1000 / RATE ))
    run "baseline-at-$RATE" http://127.0.0.1:18090/ "$baseline_pid"
    run "proxy-at-$RATE" http://127.0.0.1:18080/proxy/rc "$gw_pid"
    if [ -n "$ARCHIVE" ]; then run "proxy-no-archive-at-$RATE" http://127.0.0.1:18084/proxy/rc "$noarchive_pid"; fi
    unset DELAY_MS
  fi
done

python3 - "$work/runs" "$idle_baseline" "$idle_callgate" "$ROUNDS" "$C" <<'PY'
import json, statistics, sys
path, idle_b, idle_c, rounds, c = sys.argv[1:]
runs = [json.loads(l) for l in open(path)]
peers = []
for r in runs:
    if r["peer"] not in peers:
        peers.append(r["peer"])
med = {p: {k: statistics.median(r[k] for r in runs if r["peer"] == p)
           for k in ("rps", "p50_ms", "p99_ms", "cpu_us", "failed", "peak_rss_kib", "end_to_end", "backlog", "per_commit")}
       for p in peers}
print(f"\nmedians of {rounds} runs, concurrency {c}, RingCentral → Vidyo, distinct notifications")
print("| peer | CPU per event | req/s | p50 | p99 | peak RSS | failed |")
print("|---|---|---|---|---|---|---|")
for p in peers:
    m = med[p]
    print(f"| {p} | {m['cpu_us']:.1f} µs | {m['rps']:,.0f} | {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms | "
          f"{m['peak_rss_kib'] / 1024:.1f} MiB | {m['failed']:.0f} |")
print("\nratios to the baseline of the same load (target for proxy, issue 22: CPU ≤ 2.5×, p99 ≤ 2.5×)")
for p in [p for p in peers if "queued" not in p and not p.startswith("baseline")]:
    m = med[p]
    b = med["baseline" + (p[p.index("-at-"):] if "-at-" in p else "")]
    print(f"  {p:12s} CPU {m['cpu_us'] / b['cpu_us']:.2f}×  req/s {m['rps'] / b['rps']:.2f}×  "
          f"p50 {m['p50_ms'] / b['p50_ms']:.2f}×  p99 {m['p99_ms'] / b['p99_ms']:.2f}×")
print(f"\nidle RSS: baseline {int(idle_b) / 1024:.1f} MiB, callgate {int(idle_c) / 1024:.1f} MiB (target ≤ 24 MiB; under load ≤ 48 MiB)")
for p in peers:
    if "queued" in p:
        m = med[p]
        print(f"{p} (whole machine): {m['rps']:,.0f} events/s acked, p99 ack {m['p99_ms']:.2f} ms, backlog at end of load {m['backlog']:.0f}, "
              f"end-to-end {m['end_to_end']:,.0f} events/s until drained"
              + (f", {m['per_commit']:.1f} SQLite commands per commit" if m['per_commit'] else ""))
PY
