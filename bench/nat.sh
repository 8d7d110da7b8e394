#!/usr/bin/env bash
# Benchmarks of reach across NATs (not timed tests; figures, printed and written to
# bench/nat.json):
#
# 1. The relay's resident memory with 1,000 reservations: `queuexec relay` on loopback, and
#    core/examples/relay_reservations holding 1,000 reservations from 1,000 identities (one
#    process, one source address: the bench raises the relay's per-IP reservation rate with its
#    own flag). Peak and current RSS (VmHWM, VmRSS) once all are accepted: `queuexec relay` as
#    it is (one thread, mimalloc with huge pages off and its purge delay 0 and commit on demand),
#    with mimalloc's own defaults for those two (MIMALLOC_PURGE_DELAY=1000
#    MIMALLOC_PAGE_COMMIT_ON_DEMAND=0), and the same relay in core/examples/relay_serve (system
#    allocator, one thread).
# 2. Throughput over a hole-punched path against a direct one between the same namespaces: a
#    master behind NAT A and a worker behind NAT B (as in tests/netns-nat.sh), the worker finding
#    the master through a relay and DCUtR punching a direct TCP connection; then the same
#    namespaces with the NATs replaced by plain routing, the worker dialling the master's own
#    address. The same jobs (builtin echo, payloads both ways) on each; best of 3 runs. Once
#    more with NAT B symmetric, so the jobs go through the relay: its throughput and the
#    relay's CPU time.
#
#   bench/nat.sh [BUILD]     BUILD: release (default when built) or debug
#
# Needs root for part 2 (ip netns, iptables); namespaces are made and removed here. Builds
# nothing: run `cargo build --release -p queuexec-cli` and `cargo build --release -p
# queuexec-core --example relay_reservations --example relay_serve` first (or debug).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
build=${1:-}
if [ -z "$build" ]; then
  if [ -x "$target/release/queuexec" ] && [ -x "$target/release/examples/relay_reservations" ]; then build=release; else build=debug; fi
fi
bin="$target/$build/queuexec"
load="$target/$build/examples/relay_reservations"
serve="$target/$build/examples/relay_serve"
[ -x "$bin" ] || { echo "nat bench: no $bin; build it with cargo build $( [ "$build" = release ] && echo --release) -p queuexec-cli" >&2; exit 1; }
for example in "$load" "$serve"; do
  [ -x "$example" ] || { echo "nat bench: no $example; build it with cargo build $( [ "$build" = release ] && echo --release) -p queuexec-core --example $(basename "$example")" >&2; exit 1; }
done
reservations=${NAT_BENCH_RESERVATIONS:-1000}
jobs_n=${NAT_BENCH_JOBS:-4000}
payload=${NAT_BENCH_PAYLOAD:-8192}
runs=${NAT_BENCH_RUNS:-3}
work=$(mktemp -d)
id="qb$$"
pids=()
cleanup() {
  [ -n "${NAT_KEEP:-}" ] && cp -r "$work" "$work.kept" && echo "nat bench: kept $work.kept" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${id}i" "${id}r" "${id}na" "${id}ha" "${id}nb" "${id}hb"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "nat bench: $build build ($bin)"

# ---- 1. Relay memory with N reservations.
relay_memory() { # label env...
  local label=$1
  shift
  if [ "$label" = system-allocator ]; then
    # The same relay (queuexec_core::relay) in core/examples/relay_serve: the system allocator.
    mkfifo "$work/serve-in"
    "$serve" /ip4/127.0.0.1/tcp/0 $((reservations + 100)) $((reservations * 2)) \
      <"$work/serve-in" >"$work/relay-mem.addr" 2>"$work/relay-mem.log" &
    exec 6>"$work/serve-in"
  else
    env "$@" "$bin" relay --listen /ip4/127.0.0.1/tcp/0 --addr-file "$work/relay-mem.addr" \
      --max-reservations $((reservations + 100)) --reservations-per-ip-per-minute $((reservations * 2)) \
      --max-connections $((reservations * 2 + 100)) >/dev/null 2>"$work/relay-mem.log" &
  fi
  local relay=$!
  pids+=("$relay")
  for _ in $(seq 1 100); do [ -s "$work/relay-mem.addr" ] && break; sleep 0.1; done
  local addr
  addr=$(head -n1 "$work/relay-mem.addr")
  local idle
  idle=$(awk '/^VmRSS/{print $2}' "/proc/$relay/status")
  # The load holds its reservations until its stdin closes.
  mkfifo "$work/hold"
  "$load" "$addr" "$reservations" 300 <"$work/hold" >"$work/load.out" 2>"$work/load.log" &
  local loader=$!
  pids+=("$loader")
  exec 8>"$work/hold"
  for _ in $(seq 1 1200); do [ -s "$work/load.out" ] && break; sleep 0.1; done
  cat "$work/load.out"
  grep -q "^reservations: $reservations accepted" "$work/load.out" || { echo "nat bench: the reservations were not all accepted" >&2; exit 1; }
  sleep 2
  local rss hwm held
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$relay/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$relay/status")
  held=$(grep -c "reservation accepted" "$work/relay-mem.log" || true)
  [ "$label" = system-allocator ] && held=$(sed -n "s/^reservations: \([0-9]*\) accepted.*/\1/p" "$work/load.out")
  exec 8>&-
  wait "$loader" || true
  if [ "$label" = system-allocator ]; then exec 6>&-; else kill -INT "$relay"; fi
  wait "$relay" || true
  rm -f "$work/hold" "$work/serve-in" "$work/relay-mem.addr"
  echo "nat bench: relay ($label): idle ${idle} KiB; with $held reservations RSS ${rss} KiB, peak ${hwm} KiB"
  mem_json+=("\"$label\": {\"idle_kib\": $idle, \"rss_kib\": $rss, \"peak_kib\": $hwm, \"reservations\": $held}")
}
mem_json=()
relay_memory default
# `queuexec relay` sets these two mimalloc options itself unless they are in its environment
# (cli/src/relay_cmd.rs): mimalloc 3's own defaults, to show what that buys.
relay_memory mimalloc-defaults MIMALLOC_PURGE_DELAY=1000 MIMALLOC_PAGE_COMMIT_ON_DEMAND=0
relay_memory system-allocator

# ---- 2. Hole-punched against direct throughput.
if [ "$(id -u)" -ne 0 ]; then
  echo "nat bench: part 2 needs root (ip netns, iptables); skipped" >&2
  exit 0
fi
ip netns add "${id}i"
lan_prefix=10.72
# shellcheck source=tests/netns-topology.sh
. "$root/tests/netns-topology.sh"
internet
ip netns add "${id}r"
attach "${id}r" 1
make_router a 10 1
make_router b 20 2
nat_off() { # name other-octet other-net
  local nat="${id}n$1"
  ip netns exec "$nat" iptables -t nat -F
  ip netns exec "$nat" iptables -F
  ip -n "$nat" route add "10.72.$3.0/24" via "198.51.100.$2"
}
nat_on a
nat_on b

ip netns exec "${id}r" "$bin" relay --listen /ip4/198.51.100.1/tcp/4001 --addr-file "$work/relay.addr" \
  --autonat-any-ip >/dev/null 2>"$work/relay.log" &
relay=$!
pids+=("$relay")
relay_cpu() { awk '{print $14 + $15}' "/proc/$relay/stat"; }  # user + system, in clock ticks
tck=$(getconf CLK_TCK)
for _ in $(seq 1 100); do [ -s "$work/relay.addr" ] && break; sleep 0.1; done
boot=$(head -n1 "$work/relay.addr")
export token=nat-bench-room transferEncryptToken=nat-bench-transfer-token-0123456789abcdef
python3 - "$jobs_n" "$payload" >"$work/jobs.jsonl" <<'EOF'
import json, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(json.dumps({"id": f"j{i}", "data": f"{i:08d}" + "x" * (size - 8)}))
EOF
mb=$(awk "BEGIN{printf \"%.1f\", $jobs_n * $payload * 2 / 1e6}")

one_run() { # mode -> sets elapsed (seconds)
  local mode=$1 master_args worker_args
  rm -f "$work/jobs.fifo" "$work/results.jsonl" "$work/master.addr"
  mkfifo "$work/jobs.fifo"
  if [ "$mode" != direct ]; then
    master_args=(--bootstrap "$boot")
  else
    master_args=(--listen /ip4/10.72.1.2/tcp/9000 --addr-file "$work/master.addr")
  fi
  ip netns exec "${id}ha" env QUEUEXEC_ROOM_DIR="$work/rooms-m" "$bin" master "${master_args[@]}" \
    --jobs "$work/jobs.fifo" --results "$work/results.jsonl" --exit-when-done 2>"$work/master.log" &
  local master=$!
  pids+=("$master")
  exec 7>"$work/jobs.fifo"
  if [ "$mode" != direct ]; then
    worker_args=(--bootstrap "$boot")
  else
    for _ in $(seq 1 100); do [ -s "$work/master.addr" ] && break; sleep 0.1; done
    worker_args=(--master "$(grep -m1 /ip4/10.72.1.2/ "$work/master.addr")")
  fi
  ip netns exec "${id}hb" env QUEUEXEC_ROOM_DIR="$work/rooms-w" "$bin" worker "${worker_args[@]}" \
    --builtin echo --concurrency 8 --workplace "$work/wp" 2>"$work/worker.log" 7>&- &
  local worker=$!
  pids+=("$worker")
  # Jobs start once the worker is on its direct path (a punch that ends after the worker's
  # wait moves it there from the relay).
  local want=direct
  [ "$mode" = relayed ] && want=relayed
  for _ in $(seq 1 300); do grep -q "connected to master .*($want)" "$work/worker.log" && break; sleep 0.1; done
  grep -q "connected to master .*($want)" "$work/worker.log" || { echo "nat bench: the worker is not on a $want path ($mode): $(grep connected "$work/worker.log" || echo none)" >&2; exit 1; }
  local t0 t1
  t0=$(date +%s.%N)
  cat "$work/jobs.jsonl" >&7
  exec 7>&-
  wait "$master"
  t1=$(date +%s.%N)
  kill -INT "$worker"
  wait "$worker" || true
  [ "$(wc -l <"$work/results.jsonl")" -eq "$jobs_n" ] || { echo "nat bench: $mode: $(wc -l <"$work/results.jsonl") results of $jobs_n" >&2; exit 1; }
  elapsed=$(awk "BEGIN{printf \"%.3f\", $t1 - $t0}")
  echo "nat bench: $mode run: $elapsed s" >&2
}
best() { sort -n | head -n1; }
punched=()
for _ in $(seq 1 "$runs"); do one_run punched; punched+=("$elapsed"); done
# Through the relay: NAT B made symmetric (a random port per flow), so the punch fails. The
# relay's CPU time over the run.
ip netns exec "${id}nb" iptables -t nat -R POSTROUTING 1 -o wan -j MASQUERADE --random-fully
cpu0=$(relay_cpu)
one_run relayed
relayed_s=$elapsed
cpu1=$(relay_cpu)
relay_cpu_s=$(awk "BEGIN{printf \"%.2f\", ($cpu1 - $cpu0) / $tck}")
ip netns exec "${id}nb" iptables -t nat -R POSTROUTING 1 -o wan -j MASQUERADE
nat_off a 20 2
nat_off b 10 1
direct=()
for _ in $(seq 1 "$runs"); do one_run direct; direct+=("$elapsed"); done
p=$(printf '%s\n' "${punched[@]}" | best)
d=$(printf '%s\n' "${direct[@]}" | best)
pt=$(awk "BEGIN{printf \"%.1f\", $mb / $p}")
dt=$(awk "BEGIN{printf \"%.1f\", $mb / $d}")
ratio=$(awk "BEGIN{printf \"%.3f\", $d / $p}")
echo "nat bench: $jobs_n jobs of $payload bytes each way ($mb MB), worker --builtin echo --concurrency 8, best of $runs"
echo "nat bench: hole-punched (NAT A <-> NAT B, DCUtR over TCP): ${p} s, ${pt} MB/s (runs: ${punched[*]})"
echo "nat bench: direct (same namespaces, routed, no NAT):       ${d} s, ${dt} MB/s (runs: ${direct[*]})"
rt=$(awk "BEGIN{printf \"%.1f\", $mb / $relayed_s}")
echo "nat bench: relayed (NAT B symmetric, one run):          ${relayed_s} s, ${rt} MB/s; the relay used ${relay_cpu_s} s of CPU"
echo "nat bench: hole-punched throughput is $(awk "BEGIN{printf \"%.0f\", $ratio * 100}")% of direct"

mem=$(IFS=,; echo "${mem_json[*]}")
cat >"$root/bench/nat.json" <<EOF
{
  "NAT": {
    "build": "$build",
    "relay_memory_${reservations}_reservations": {$mem},
    "throughput": {
      "jobs": $jobs_n, "payload_bytes": $payload, "megabytes_both_ways": $mb, "runs": $runs,
      "hole_punched_seconds": $p, "hole_punched_mb_per_s": $pt,
      "direct_seconds": $d, "direct_mb_per_s": $dt,
      "punched_over_direct": $ratio,
      "relayed_seconds": $relayed_s, "relayed_mb_per_s": $rt, "relay_cpu_seconds_while_relaying": $relay_cpu_s
    }
  }
}
EOF
echo "nat bench: wrote bench/nat.json"
