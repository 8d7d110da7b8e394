#!/usr/bin/env bash
# mDNS discovery, tested only where multicast is allowed to go: two network namespaces this
# script creates, joined by a veth pair. The master and the worker are given no address and
# do not share a room directory, so only mDNS can bring them together.
#
#   tests/netns-mdns.sh path/to/queuexec
#
# Needs root (ip netns). Cleans up its namespaces and processes (by PID) on exit.
set -euo pipefail
bin=$(realpath -m "$1")
id="qx$$"
ns_m="${id}m"; ns_w="${id}w"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$ns_m" 2>/dev/null || true
  ip netns del "$ns_w" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin" ] || { echo "netns-mdns: FAILED: no queuexec binary at $1 (build it with cargo build --workspace)" >&2; exit 1; }
if ! ip netns add "$ns_m" || ! ip netns add "$ns_w" || ! ip link add "${id}a" type veth peer name "${id}b"; then
  echo "netns-mdns: FAILED: cannot make network namespaces and a veth pair (ip netns add / ip link add)" >&2
  echo "netns-mdns: this test needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN, and iproute2; it never skips" >&2
  exit 1
fi
ip link set "${id}a" netns "$ns_m"
ip link set "${id}b" netns "$ns_w"
ip -n "$ns_m" addr add 10.231.0.1/24 dev "${id}a"
ip -n "$ns_w" addr add 10.231.0.2/24 dev "${id}b"
for ns in "$ns_m" "$ns_w"; do
  ip -n "$ns" link set lo up
done
ip -n "$ns_m" link set "${id}a" up multicast on
ip -n "$ns_w" link set "${id}b" up multicast on

export token=netns-mdns-room transferEncryptToken=netns-mdns-transfer-token-0123456789
seq 1 20 > "$work/jobs.jsonl"
ip netns exec "$ns_m" env QUEUEXEC_ROOM_DIR="$work/rooms-m" "$bin" master --mdns \
  --listen /ip4/10.231.0.1/tcp/0 --jobs "$work/jobs.jsonl" --results "$work/results.jsonl" \
  --exit-when-done 2>"$work/master.log" &
master=$!
pids+=("$master")
ip netns exec "$ns_w" env QUEUEXEC_ROOM_DIR="$work/rooms-w" "$bin" worker --mdns --name lan-worker \
  --exec cat --workplace "$work/wp" 2>"$work/worker.log" &
pids+=("$!")

for _ in $(seq 1 300); do
  if ! kill -0 "$master" 2>/dev/null; then break; fi
  sleep 0.1
done
if kill -0 "$master" 2>/dev/null; then
  echo "netns-mdns: the worker did not find the master by mDNS within 30 s" >&2
  cat "$work/master.log" "$work/worker.log" >&2
  exit 1
fi
wait "$master"
lines=$(wc -l < "$work/results.jsonl")
if [ "$lines" -ne 20 ] || ! grep -q '"name":"lan-worker"' "$work/results.jsonl"; then
  echo "netns-mdns: expected 20 results from lan-worker, got $lines" >&2
  exit 1
fi
echo "netns-mdns: 1 passed, 0 failed"
