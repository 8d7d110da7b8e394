#!/usr/bin/env bash
# Reach across NATs with nothing but the tokens and a relay address, in network namespaces this
# script creates (and removes on exit):
#
#   "internet" 198.51.100.0/24 (a bridge): relay .1, NAT A .10, NAT B .20, NAT C .30, NAT S .40
#   NAT A (cone: endpoint-independent mapping) -> master   10.71.1.2
#   NAT B (cone)                               -> worker b 10.71.2.2 (and a worker with another token)
#   NAT C (cone)                               -> worker c 10.71.3.2
#   NAT S (symmetric: random port per flow)    -> worker s 10.71.4.2
#
# Each NAT is Linux masquerade with a router's usual firewall: replies to what went out come in,
# nothing unsolicited does. The master and workers share no room directory and no LAN, so only
# the relay's rendezvous brings them together. Checks: every job completes; workers b and c end
# on direct (hole-punched) connections and send nothing through the relay; worker s, whose NAT
# cannot be punched, completes jobs through the relay; a worker with another token finds nothing.
#
#   tests/netns-nat.sh path/to/queuexec
#
# Needs root (ip netns, iptables). Never skips; every wait has a deadline.
set -euo pipefail
bin=$(realpath -m "$1")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs_n=${NAT_JOBS:-2000}
id="qn$$"
ns_i="${id}i"; ns_r="${id}r"
nats=(a b c s)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for n in "${nats[@]}"; do
    ip netns del "${id}n$n" 2>/dev/null || true
    ip netns del "${id}h$n" 2>/dev/null || true
  done
  ip netns del "$ns_r" 2>/dev/null || true
  ip netns del "$ns_i" 2>/dev/null || true
  if [ -n "${NAT_KEEP:-}" ]; then echo "netns-nat: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
  echo "netns-nat: FAILED: $*" >&2
  for f in "$work"/*.log; do
    [ -f "$f" ] || continue
    echo "----- $(basename "$f") (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
  exit 1
}

[ -x "$bin" ] || fail "no queuexec binary at $1 (build it with cargo build -p queuexec-cli)"
command -v iptables >/dev/null || fail "iptables is missing (scripts/ensure-deps.sh installs it)"
if ! ip netns add "$ns_i"; then
  echo "netns-nat: FAILED: cannot make network namespaces (ip netns add); this test needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN, and iproute2; it never skips" >&2
  exit 1
fi
lan_prefix=10.71
# shellcheck source=tests/netns-topology.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns-topology.sh"
internet
ip netns add "$ns_r"
attach "$ns_r" 1

# NAT n: a router between 198.51.100.$octet and 10.71.$net.0/24, with one host behind it.
make_nat() { # name octet net random
  make_router "$1" "$2" "$3"
  nat_on "$1" "$4"
}

make_nat a 10 1 no
make_nat b 20 2 no
make_nat c 30 3 no
make_nat s 40 4 yes

# The relay, on the "internet".
ip netns exec "$ns_r" "$bin" relay --listen /ip4/198.51.100.1/udp/4001/quic-v1 \
  --listen /ip4/198.51.100.1/tcp/4001 --addr-file "$work/relay.addr" --autonat-any-ip \
  >"$work/relay.out" 2>"$work/relay.log" &
relay=$!
pids+=("$relay")
for _ in $(seq 1 100); do
  [ -s "$work/relay.addr" ] && break
  kill -0 "$relay" 2>/dev/null || fail "the relay exited"
  sleep 0.1
done
[ -s "$work/relay.addr" ] || fail "the relay wrote no address within 10 s"
boot=$(grep -m1 "/${NAT_TRANSPORT:-tcp}/" "$work/relay.addr" || true)
[ -n "$boot" ] || fail "the relay's addresses have no ${NAT_TRANSPORT:-tcp} one: $(cat "$work/relay.addr")"
grep -q "^/ip4/198.51.100.1/.*/p2p/12D3" <<<"$boot" || fail "unexpected relay address $boot"
grep -qF "$boot" "$work/relay.out" || fail "the relay did not print its address on stdout"

export token=netns-nat-room transferEncryptToken=netns-nat-transfer-token-0123456789abcdef
mkfifo "$work/jobs.fifo"

# The master, behind NAT A, with --bootstrap.
ip netns exec "${id}ha" env QUEUEXEC_ROOM_DIR="$work/rooms-master" "$bin" master \
  --bootstrap "$boot" --jobs "$work/jobs.fifo" --results "$work/results.jsonl" \
  --exit-when-done 2>"$work/master.log" &
master=$!
pids+=("$master")
exec 7>"$work/jobs.fifo"   # hold the jobs input open until the workers are in (they get no fd 7)

# Workers: b through the environment, c through .env, s through --bootstrap.
start_worker() { # name host-ns extra...
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" env QUEUEXEC_ROOM_DIR="$work/rooms-$name" "$@" \
    --name "$name" --exec "${exec_cmd:-cat}" --concurrency 4 --workplace "$work/wp-$name" \
    2>"$work/worker-$name.log" 7>&- &
  pids+=("$!")
  eval "pid_$name=$!"
}
start_worker b "${id}hb" QUEUEXEC_BOOTSTRAP="$boot" "$bin" worker
mkdir -p "$work/c"
printf 'QUEUEXEC_BOOTSTRAP=%s\n' "$boot" >"$work/c/.env"
start_worker c "${id}hc" "$bin" worker --env-file "$work/c/.env"
start_worker s "${id}hs" "$bin" worker --bootstrap "$boot"
# Another room's worker, on NAT B's network too: finds nothing, is served nothing.
ip netns exec "${id}hb" env QUEUEXEC_ROOM_DIR="$work/rooms-x" token=another-room \
  "$bin" worker --bootstrap "$boot" --name intruder --exec cat --workplace "$work/wp-x" \
  2>"$work/worker-x.log" 7>&- &
pid_x=$!
pids+=("$pid_x")

started=$(date +%s.%N)
for _ in $(seq 1 300); do
  all=yes
  for w in b c s; do grep -q "connected to master" "$work/worker-$w.log" || all=no; done
  [ $all = yes ] && break
  kill -0 "$master" 2>/dev/null || fail "the master exited early"
  sleep 0.1
done
[ $all = yes ] || fail "not every worker joined the master within 30 s"
joined=$(date +%s.%N)
echo "netns-nat: all three workers joined $(awk "BEGIN{printf \"%.1f\", $joined - $started}") s after they started"

# Give b and c a moment to settle on their final path, then feed the jobs.
sleep 1
seq 1 "$jobs_n" >&7
exec 7>&-

for _ in $(seq 1 1200); do
  kill -0 "$master" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$master" 2>/dev/null && fail "the master did not finish $jobs_n jobs within 120 s"
wait "$master" || fail "the master exited with an error"
done_at=$(date +%s.%N)

lines=$(wc -l <"$work/results.jsonl")
[ "$lines" -eq "$jobs_n" ] || fail "expected $jobs_n results, got $lines"
for w in b c s; do
  n=$(grep -c "\"name\":\"$w\"" "$work/results.jsonl" || true)
  echo "netns-nat: worker $w did $n jobs"
  [ "$n" -gt 0 ] || fail "worker $w did no job"
done
grep -q '"name":"intruder"' "$work/results.jsonl" && fail "the other room's worker got jobs"
grep -q '"error"' "$work/results.jsonl" && fail "some jobs failed: $(grep -m3 '"error"' "$work/results.jsonl")"

# Paths: b and c end direct (hole punched), s relayed.
last_path() { grep "connected to master" "$work/worker-$1.log" | tail -n1 | sed 's/.*(\(.*\))$/\1/'; }
for w in b c; do
  [ "$(last_path $w)" = direct ] || fail "worker $w is not on a direct path: $(grep 'connected to master' "$work/worker-$w.log")"
done
[ "$(last_path s)" = relayed ] || fail "worker s behind the symmetric NAT should be relayed: $(grep 'connected to master' "$work/worker-s.log")"
grep -q "connected to master" "$work/worker-x.log" && fail "the other room's worker joined a master"

# Stop the workers (SIGINT: each prints its stats line) and read what went through the relay.
for w in b c s x; do eval "kill -INT \$pid_$w"; done
for w in b c s x; do eval "wait \$pid_$w" || true; done
relayed() { sed -n 's/.*relayed_bytes=\([0-9]*\).*/\1/p' "$work/worker-$1.log" | tail -n1; }
for w in b c s; do
  [ -n "$(relayed $w)" ] || fail "worker $w printed no stats line"
done
[ "$(relayed b)" -eq 0 ] || fail "worker b sent $(relayed b) bytes through the relay on a direct path"
[ "$(relayed c)" -eq 0 ] || fail "worker c sent $(relayed c) bytes through the relay on a direct path"
[ "$(relayed s)" -gt 0 ] || fail "worker s counted no relayed bytes"
master_relayed=$(sed -n 's/^network: \([0-9]*\) bytes.*/\1/p' "$work/master.log")
[ -n "$master_relayed" ] || fail "the master printed no network line"
[ "$master_relayed" -gt 0 ] || fail "the master counted no relayed bytes"
grep -q "reservation accepted" "$work/relay.log" || fail "the relay logged no reservation"
grep -q "registered at the rendezvous" "$work/relay.log" || fail "the relay logged no registration"
# What the relay saw names no room: neither token nor room id appears in its log.
room_id=$(printf '%s' "$token" | sha256sum | cut -c1-64)
grep -qF "$token" "$work/relay.log" && fail "the relay's log shows the room token"
grep -qF "$room_id" "$work/relay.log" && fail "the relay's log shows the room id"

relay_rss=$(awk '/^VmHWM/{print $2}' "/proc/$relay/status")
echo "netns-nat: relay peak RSS ${relay_rss} KiB (1 reservation, 3 circuits, 5 connections)"
echo "netns-nat: $jobs_n jobs in $(awk "BEGIN{printf \"%.1f\", $done_at - $joined}") s; relayed bytes: master $master_relayed, worker s $(relayed s), b $(relayed b), c $(relayed c)"

# ---- c. The master restarts behind its NAT on its store, mid-run: killed (SIGKILL, no goodbye)
# and started again on the same store, jobs and results files. Workers find it again through the
# rendezvous; every job's result is in the results file exactly once, none missing.
restart_jobs=${NAT_RESTART_JOBS:-1000}
seq 1 "$restart_jobs" >"$work/jobs-r.txt"
start_master_r() {
  ip netns exec "${id}ha" env QUEUEXEC_ROOM_DIR="$work/rooms-master" "$bin" master \
    --bootstrap "$boot" --jobs "$work/jobs-r.txt" --results "$work/results-r.jsonl" \
    --store "$work/master-r.sqlite" --exit-when-done 2>>"$work/master-r.log" &
  master=$!
  pids+=("$master")
}
registrations() { grep -c "registered at the rendezvous" "$work/relay.log" || true; }
registered=$(registrations)
start_master_r
for _ in $(seq 1 100); do
  [ "$(registrations)" -gt "$registered" ] && break
  sleep 0.1
done
[ "$(registrations)" -gt "$registered" ] || fail "the restart test's master did not register at the rendezvous within 10 s"
# Join to first result: each worker starts once the master is registered with jobs queued; the
# time from its start to its first result line. Worker c starts its job stream on the relay at
# once (no wait for the punch) and moves to the direct connection when DCUtR succeeds.
# Each job takes 50 ms or more, so the run lasts long enough to be cut in the middle.
exec_cmd='sleep 0.05; cat'
declare -A began first
began[b]=$(date +%s.%N)
start_worker b "${id}hb" QUEUEXEC_BOOTSTRAP="$boot" "$bin" worker
began[c]=$(date +%s.%N)
start_worker c "${id}hc" QUEUEXEC_HOLE_PUNCH_WAIT_MS=0 "$bin" worker --env-file "$work/c/.env"
began[s]=$(date +%s.%N)
start_worker s "${id}hs" "$bin" worker --bootstrap "$boot"
for _ in $(seq 1 500); do
  for w in b c s; do
    [ -n "${first[$w]:-}" ] && continue
    grep -q "\"name\":\"$w\"" "$work/results-r.jsonl" 2>/dev/null && first[$w]=$(date +%s.%N)
  done
  [ -n "${first[b]:-}" ] && [ -n "${first[c]:-}" ] && [ -n "${first[s]:-}" ] && break
  sleep 0.02
done
for w in b c s; do
  [ -n "${first[$w]:-}" ] || fail "worker $w had no result within 10 s of its start"
done
echo "netns-nat: start to first result: b (cone, direct) $(awk "BEGIN{printf \"%.2f\", ${first[b]} - ${began[b]}}") s, c (cone, relay first) $(awk "BEGIN{printf \"%.2f\", ${first[c]} - ${began[c]}}") s, s (symmetric, relayed) $(awk "BEGIN{printf \"%.2f\", ${first[s]} - ${began[s]}}") s"
joins() { grep -c "connected to master" "$work/worker-$1.log" || true; }
cut=$((restart_jobs / 4))
for _ in $(seq 1 600); do
  [ "$(joins b)" -ge 1 ] && [ "$(joins s)" -ge 1 ] && [ -f "$work/results-r.jsonl" ] &&
    [ "$(wc -l <"$work/results-r.jsonl")" -ge "$cut" ] && break
  kill -0 "$master" 2>/dev/null || fail "the restart test's first master exited early"
  sleep 0.1
done
[ "$(wc -l <"$work/results-r.jsonl")" -ge "$cut" ] || fail "the restart test's master wrote fewer than $cut results within 60 s"
first_id=$(sed -n 's/.*master listening.*peer=\([^ ]*\).*/\1/p' "$work/master-r.log" | head -n1)
kill -KILL "$master"
wait "$master" 2>/dev/null || true
killed_at=$(date +%s.%N)
before=$(wc -l <"$work/results-r.jsonl")
[ "$before" -lt "$restart_jobs" ] || fail "the run ended before the master was killed; raise NAT_RESTART_JOBS"
joins_b=$(joins b)
joins_s=$(joins s)
[ "$joins_b" -ge 1 ] && [ "$joins_s" -ge 1 ] || fail "the restart test's workers had not both joined before the kill"
echo "netns-nat: master killed after $before of $restart_jobs results"
sleep 1
start_master_r
restarted_at=$(date +%s.%N)
for _ in $(seq 1 300); do
  [ "$(joins b)" -gt "$joins_b" ] && [ "$(joins s)" -gt "$joins_s" ] && break
  sleep 0.1
done
[ "$(joins b)" -gt "$joins_b" ] || fail "worker b did not find the restarted master within 30 s"
[ "$(joins s)" -gt "$joins_s" ] || fail "worker s did not find the restarted master within 30 s"
rejoined_at=$(date +%s.%N)
second_id=$(sed -n 's/.*master listening.*peer=\([^ ]*\).*/\1/p' "$work/master-r.log" | tail -n1)
[ -n "$first_id" ] && [ "$first_id" = "$second_id" ] || fail "the restarted master has another peer id ($first_id, then $second_id): it should keep the store's key"
for _ in $(seq 1 1200); do
  kill -0 "$master" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$master" 2>/dev/null && fail "the restarted master did not finish within 120 s"
wait "$master" || fail "the restarted master exited with an error"
lines=$(wc -l <"$work/results-r.jsonl")
unique=$(sed -n 's/^{"jobID":"\([^"]*\)".*/\1/p' "$work/results-r.jsonl" | sort -u | wc -l)
[ "$lines" -eq "$restart_jobs" ] || fail "after the restart: expected $restart_jobs result lines, got $lines ($unique distinct jobs)"
[ "$unique" -eq "$restart_jobs" ] || fail "after the restart: $unique distinct jobs in $lines lines"
# Each job's result is its own data back (the workers run cat): nothing mixed up.
bad=$(awk -F'"data":' '{print $2}' "$work/results-r.jsonl" | tr -d '}' | sort -n | uniq | wc -l)
[ "$bad" -eq "$restart_jobs" ] || fail "after the restart: the results' data do not cover the $restart_jobs inputs"
grep -q '"error"' "$work/results-r.jsonl" && fail "after the restart some jobs failed: $(grep -m3 '"error"' "$work/results-r.jsonl")"
[ "$(last_path c)" = direct ] || fail "worker c (cone NAT, starting on the relay) did not end direct: $(grep 'connected to master' "$work/worker-c.log")"
for w in b c s; do eval "kill -INT \$pid_$w"; done
for w in b c s; do eval "wait \$pid_$w" || true; done
echo "netns-nat: restart: both workers found the restarted master $(awk "BEGIN{printf \"%.1f\", $rejoined_at - $restarted_at}") s after it started ($(awk "BEGIN{printf \"%.1f\", $rejoined_at - $killed_at}") s after the kill), same peer id; $restart_jobs results, each once ($before before the kill)"

# ---- e. The Node packages across NATs with only a .env: a master (behind NAT A) and workers
# (behind NAT B, cone, and NAT S, symmetric) written against queue-xec's original API, each
# started in a directory whose .env holds token, transferEncryptToken and QUEUEXEC_BOOTSTRAP,
# with none of them in the environment. Needs node and the addon (npm run build).
node_dir="$repo/tests/netns-nat-node"
command -v node >/dev/null || fail "node is missing (scripts/ensure-deps.sh installs it)"
ls "$repo"/bindings/node/native/queuexec.*.node >/dev/null 2>&1 ||
  fail "the Node addon is not built: run npm run build at the repository root first"
[ -e "$repo/node_modules/queue-xec-master" ] ||
  fail "no node_modules/queue-xec-master: run npm install at the repository root first"
node_jobs=${NAT_NODE_JOBS:-300}
for app in node-m node-b node-s; do
  mkdir -p "$work/$app"
  printf 'token=netns-nat-node-room\ntransferEncryptToken=%s\nQUEUEXEC_BOOTSTRAP=%s\n' \
    "netns-nat-node-transfer-token-0123456789" "$boot" >"$work/$app/.env"
done
cp "$node_dir/task.js" "$work/node-m/task.js"
node_in() { # app ns log script args...
  local app=$1 ns=$2 log=$3
  shift 3
  (cd "$work/$app" && exec ip netns exec "$ns" env -u token -u transferEncryptToken \
    QUEUEXEC_ROOM_DIR="$work/rooms-$app" node "$@" >"$work/$log" 2>&1) &
  pids+=("$!")
}
node_in node-m "${id}ha" node-master.log "$node_dir/master.js" "$node_jobs"
node_master=$!
node_in node-b "${id}hb" node-worker-b.log "$node_dir/worker.js" node-b
node_b=$!
node_in node-s "${id}hs" node-worker-s.log "$node_dir/worker.js" node-s
node_s=$!
node_started=$(date +%s.%N)
for _ in $(seq 1 900); do
  kill -0 "$node_master" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$node_master" 2>/dev/null && fail "the Node master did not have its $node_jobs results within 90 s"
wait "$node_master" || fail "the Node master failed: $(tail -n 5 "$work/node-master.log")"
node_done=$(date +%s.%N)
grep -q "^node-master: $node_jobs results" "$work/node-master.log" || fail "the Node master did not report its results: $(tail -n 5 "$work/node-master.log")"
node_last_path() { sed -n 's/^node-worker: connected //p' "$work/node-worker-$1.log" | tail -n1; }
[ "$(node_last_path b)" = direct ] || fail "the Node worker behind NAT B is not on a direct path: $(grep connected "$work/node-worker-b.log")"
[ "$(node_last_path s)" = relayed ] || fail "the Node worker behind the symmetric NAT should be relayed: $(grep connected "$work/node-worker-s.log")"
for w in node-b node-s; do
  grep -q "^node-master: $node_jobs results.*\"$w\":[1-9]" "$work/node-master.log" || fail "the Node worker $w did no job: $(tail -n1 "$work/node-master.log")"
done
for pid in "$node_b" "$node_s"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "$node_b" "$node_s"; do wait "$pid" 2>/dev/null || true; done
echo "netns-nat: Node packages with only a .env: $(sed -n 's/^node-master: //p' "$work/node-master.log" | tail -n1) in $(awk "BEGIN{printf \"%.1f\", $node_done - $node_started}") s from the start; node-b direct, node-s relayed"

echo "netns-nat: 3 passed, 0 failed"
