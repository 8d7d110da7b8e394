# The NAT topology shared by tests/netns-nat.sh and bench/nat.sh (sourced, not run): an
# "internet" bridge 198.51.100.0/24 in namespace ${id}i, namespaces attached to it, and routers
# ${id}n<name> with one host ${id}h<name> behind each on $lan_prefix.<net>.0/24. The caller sets
# `id` (its namespace prefix) and `lan_prefix`, makes ${id}i, and removes every namespace.

# The bridge in ${id}i (which the caller made).
internet() {
  ip -n "${id}i" link set lo up
  ip -n "${id}i" link add br0 type bridge
  ip -n "${id}i" link set br0 up
}

# Attaches namespace $1 to the bridge as 198.51.100.$2 (interface `wan`).
attach() { # ns octet
  local ns=$1 octet=$2 ifc="${id}x$2"
  ip link add "$ifc" netns "${id}i" type veth peer name wan netns "$ns"
  ip -n "${id}i" link set "$ifc" master br0 up
  ip -n "$ns" addr add "198.51.100.$octet/24" dev wan
  ip -n "$ns" link set wan up
  ip -n "$ns" link set lo up
}

# Router $1 at 198.51.100.$2, forwarding for its host at $lan_prefix.$3.2 (no NAT yet).
make_router() { # name octet net
  local nat="${id}n$1" host="${id}h$1" net=$3
  ip netns add "$nat"
  ip netns add "$host"
  attach "$nat" "$2"
  ip link add lan netns "$nat" type veth peer name eth0 netns "$host"
  ip -n "$nat" addr add "$lan_prefix.$net.1/24" dev lan
  ip -n "$nat" link set lan up
  ip -n "$host" addr add "$lan_prefix.$net.2/24" dev eth0
  ip -n "$host" link set eth0 up
  ip -n "$host" link set lo up
  ip -n "$host" route add default via "$lan_prefix.$net.1"
  ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1
}

# Router $1 masquerades with a home router's firewall. Masquerade keeps the source port when it
# can (endpoint-independent mapping, a cone NAT); with $2 = yes, --random-fully gives every flow
# a random port (a symmetric NAT). Replies come in, nothing unsolicited does (no RST or ICMP).
nat_on() { # name [yes]
  local nat="${id}n$1"
  if [ "${2:-no}" = yes ]; then
    ip netns exec "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully
  else
    ip netns exec "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
  fi
  ip netns exec "$nat" iptables -A FORWARD -i lan -o wan -j ACCEPT
  ip netns exec "$nat" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  ip netns exec "$nat" iptables -A FORWARD -i wan -j DROP
  ip netns exec "$nat" iptables -A INPUT -i wan -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  ip netns exec "$nat" iptables -A INPUT -i wan -j DROP
}
