#!/usr/bin/env bash
# netns-cluster.sh runs a raftkv cluster on a LAN made of Linux network
# namespaces on this machine: a hub namespace holding bridge br0, and one
# namespace per host plugged into it by a veth pair, each host with its own
# address on a /24. The entrance runs on .1, raftd nodes on .2, .3, ...
# WITHOUT --entrance (they find the entrance by UDP broadcast to the subnet's
# broadcast address, port 7799), and a client namespace on .254 is there for
# raftctl. Needs root and iproute2 (`ip netns`).
#
#   sudo deploy/netns-cluster.sh [up] [--fresh] [-n NODES]
#       build, create the LAN, start everything, print how to use it, and
#       stay in the foreground; Ctrl-C (or the script's exit) stops the
#       processes it started and deletes the namespaces it created
#   sudo deploy/netns-cluster.sh ctl RAFTCTL-ARGS...
#       run raftctl in the client namespace of the running LAN
#   sudo deploy/netns-cluster.sh cut NODE | heal NODE
#       take node NODE's (n1, n2, ...) bridge-side link down / up again:
#       a silent partition of that host, both ways
#   sudo deploy/netns-cluster.sh down
#       clean up after an `up` that was killed with SIGKILL: stop the pids
#       and delete the namespaces listed in its state file
#
# Environment:
#   RAFTKV_DATA     data directory (default ./tmp/netns-cluster); kept between
#                   runs (unless --fresh); holds the secret, logs, node data
#                   and the state file of the running LAN
#   RAFTKV_SUBNET   first three octets of the /24 (default 10.213.7)
#   RAFTKV_PREFIX   namespace name prefix (default rkvlan-<pid>-, unique per run)
#   BIN             where the binaries are built (default ./bin)
#
# Namespaces are isolated from each other and from the host: the subnet
# needs no free range on the host, and nothing here touches the root
# namespace's interfaces, routes or firewall.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-./bin}
DATA=${RAFTKV_DATA:-./tmp/netns-cluster}
SUBNET=${RAFTKV_SUBNET:-10.213.7}
GRACE=10 # seconds between SIGTERM and SIGKILL on shutdown
STATE="$DATA/netns.state"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

need_root() {
	if [[ $(id -u) -ne 0 ]]; then
		echo "netns-cluster: network namespaces need root; run it with sudo" >&2
		exit 1
	fi
	if ! ip netns list >/dev/null 2>&1; then
		echo "netns-cluster: 'ip netns' does not work here (iproute2 missing?)" >&2
		exit 1
	fi
}

# state_get KEY prints the values of KEY in the state file, one a line.
state_get() {
	[[ -f "$STATE" ]] || return 0
	awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); print }' "$STATE"
}

running_state() {
	if [[ ! -f "$STATE" ]]; then
		echo "netns-cluster: no running LAN (no $STATE); start one with: $0 up" >&2
		exit 1
	fi
}

# ours PID EXE: PID still runs our binary EXE (a pid from a stale state file
# may have been reused by another process).
ours() {
	local pid=$1 exe=$2
	[[ -r /proc/$pid/cmdline ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$exe"
}

stop_pids() { # "name:pid:exe" ...
	local item pid exe name
	for item in "$@"; do
		IFS=: read -r name pid exe <<<"$item"
		if ours "$pid" "$exe"; then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	local deadline=$((SECONDS + GRACE))
	for item in "$@"; do
		IFS=: read -r name pid exe <<<"$item"
		while ours "$pid" "$exe" && ((SECONDS < deadline)); do sleep 0.1; done
		if ours "$pid" "$exe"; then
			echo "$name (pid $pid) did not stop in ${GRACE}s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}

delete_namespaces() { # names...
	local ns
	for ns in "$@"; do
		if ip netns list | awk '{print $1}' | grep -qxF -- "$ns"; then
			ip netns del "$ns" || echo "could not delete namespace $ns" >&2
		fi
	done
}

cmd_down() {
	need_root
	running_state
	local procs=() nss=()
	mapfile -t procs < <(state_get PROC)
	mapfile -t nss < <(state_get NS)
	((${#procs[@]} == 0)) || stop_pids "${procs[@]}"
	# Delete in reverse creation order (hosts first, the hub last).
	local i
	for ((i = ${#nss[@]} - 1; i >= 0; i--)); do delete_namespaces "${nss[$i]}"; done
	rm -f "$STATE"
	echo "stopped ${#procs[@]} processes and deleted ${#nss[@]} namespaces"
}

raftctl_args() { # prints nothing; sets CTL (array) from the state file
	local prefix entrance bin secret
	prefix=$(state_get PREFIX)
	entrance=$(state_get ENTRANCE)
	bin=$(state_get BIN)
	secret=$(state_get SECRET)
	CTL=(ip netns exec "${prefix}client" "$bin/raftctl" --entrance "$entrance" --secret-file "$secret")
}

cmd_ctl() {
	need_root
	running_state
	raftctl_args
	exec "${CTL[@]}" "$@"
}

cmd_link() { # up|down NODE
	need_root
	running_state
	local state=$1 node=${2:-}
	local veth
	veth=$(state_get "VETH_$node")
	if [[ -z "$node" || -z "$veth" ]]; then
		echo "netns-cluster: unknown node '${node}' (nodes: $(state_get NODES))" >&2
		exit 2
	fi
	ip -n "$(state_get PREFIX)hub" link set "$veth" "$state"
	echo "$node: bridge-side link $veth $state"
}

cmd_up() {
	local fresh=0 nodes=3
	while (($# > 0)); do
		case $1 in
		--fresh) fresh=1 ;;
		-n)
			nodes=${2:?-n needs a number}
			shift
			;;
		*) usage ;;
		esac
		shift
	done
	if ! [[ "$nodes" =~ ^[0-9]+$ ]] || ((nodes < 1 || nodes > 200)); then
		echo "netns-cluster: -n wants 1 to 200 nodes" >&2
		exit 2
	fi
	need_root
	if [[ -f "$STATE" ]]; then
		echo "netns-cluster: $STATE exists: a LAN is running, or one was killed; run '$0 down' first" >&2
		exit 1
	fi
	((fresh == 0)) || rm -rf "$DATA"

	echo "building raftd, entrance and raftctl into $BIN/ ..."
	mkdir -p "$BIN"
	go build -o "$BIN/" ./cmd/raftd ./cmd/entrance ./cmd/raftctl
	mkdir -p "$DATA/logs"
	DATA=$(cd "$DATA" && pwd)
	BIN=$(cd "$BIN" && pwd)
	STATE="$DATA/netns.state"
	local secret="$DATA/secret"
	if [[ ! -s "$secret" ]]; then
		(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret")
	fi
	chmod 600 "$secret"

	PREFIX=${RAFTKV_PREFIX:-rkvlan-$$-}
	local hub="${PREFIX}hub" entrance="$SUBNET.1:7700"
	CREATED=()
	PROCS=()
	{
		echo "PREFIX=$PREFIX"
		echo "ENTRANCE=$entrance"
		echo "BIN=$BIN"
		echo "SECRET=$secret"
	} >"$STATE"

	trap on_exit EXIT
	trap 'exit 130' INT TERM

	add_ns "$hub"
	ip -n "$hub" link set lo up
	ip -n "$hub" link add br0 type bridge
	ip -n "$hub" link set br0 up

	add_host entrance 1
	add_host client 254
	local i names=()
	for ((i = 1; i <= nodes; i++)); do
		add_host "n$i" $((i + 1))
		echo "VETH_n$i=v$((i + 1))" >>"$STATE"
		names+=("n$i")
	done
	echo "NODES=${names[*]}" >>"$STATE"

	start entrance entrance "$BIN/entrance" --listen "$entrance" --http "$SUBNET.1:7780" \
		--data-dir "$DATA/entrance" --secret-file "$secret"
	for ((i = 1; i <= nodes; i++)); do
		# No --entrance: the node finds it by broadcast to $SUBNET.255:7799.
		start "n$i" "n$i" "$BIN/raftd" --name "n$i" --listen "$SUBNET.$((i + 1)):7701" \
			--http "$SUBNET.$((i + 1)):7702" --data-dir "$DATA/n$i" --secret-file "$secret"
	done

	raftctl_args
	local voters=$((nodes < 5 ? nodes : 5)) # the entrance's default --voters is 5
	echo "waiting for $nodes alive nodes, $voters of them voters (one leader) ..."
	local ready=0
	for _ in $(seq 1 60); do
		check_alive
		if ((EXITED == 1)); then
			echo "a process exited during start-up; see the logs in $DATA/logs" >&2
			exit 1
		fi
		if "${CTL[@]}" --timeout 1s list-peers 2>/dev/null |
			awk -v n="$nodes" -v v="$voters" 'NR > 1 && $5 == "alive" { a++ }
				$5 == "alive" && $4 == "leader" { l++ } $4 == "leader" || $4 == "follower" { f++ }
				END { exit !(l == 1 && a == n && f == v) }'; then
			ready=1
			break
		fi
		sleep 0.5
	done
	if ((ready == 0)); then
		echo "the cluster did not form in 30s; see the logs in $DATA/logs" >&2
		exit 1
	fi
	"${CTL[@]}" list-peers || true

	cat <<USAGE

raftkv runs on the namespace LAN $SUBNET.0/24 (namespaces ${PREFIX}*):
  entrance  $entrance (web http://$SUBNET.1:7780/, from inside a namespace)
  nodes     ${names[*]} at $SUBNET.2:7701 ... $SUBNET.$((nodes + 1)):7701 (each /metrics on :7702)
  client    namespace ${PREFIX}client, $SUBNET.254
Every raftd found the entrance by broadcast (grep "found the entrance" $DATA/logs/n*.log).
Data and logs: $DATA.

In another terminal (as root):
  $0 ctl put greeting hello
  $0 ctl get greeting
  $0 ctl list-peers
  $0 cut n2        # silent partition of n2's host; list-peers shows it suspect, then down
  $0 heal n2
or by hand:
  ip netns exec ${PREFIX}client $BIN/raftctl --entrance $entrance --secret-file $secret get greeting
  ip netns exec ${PREFIX}client curl -s http://$SUBNET.1:7780/v1/cluster
  ip -n ${PREFIX}hub link set v3 down     # n2's bridge port

Press Ctrl-C to stop the cluster and delete the namespaces.
USAGE

	STOPPING=0
	while ((STOPPING == 0)); do
		check_alive
		sleep 1
	done
}

add_ns() {
	ip netns add "$1"
	CREATED+=("$1")
	echo "NS=$1" >>"$STATE"
}

add_host() { # name, last octet
	local ns="${PREFIX}$1" veth="v$2" hub="${PREFIX}hub"
	add_ns "$ns"
	ip -n "$hub" link add "$veth" type veth peer name eth0 netns "$ns"
	ip -n "$hub" link set "$veth" master br0
	ip -n "$hub" link set "$veth" up
	ip -n "$ns" addr add "$SUBNET.$2/24" brd + dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
}

declare -A REPORTED=()
EXITED=0
start() { # name, host, then the command
	local name=$1 host=$2
	shift 2
	# ip netns exec execs the command: $! is the daemon's own pid.
	ip netns exec "${PREFIX}$host" "$@" >>"$DATA/logs/$name.log" 2>&1 &
	PROCS+=("$name:$!:$1")
	echo "PROC=$name:$!:$1" >>"$STATE"
	echo "started $name (pid $!) in ${PREFIX}$host: $*"
}

check_alive() {
	local item name pid exe
	for item in "${PROCS[@]}"; do
		IFS=: read -r name pid exe <<<"$item"
		if ! kill -0 "$pid" 2>/dev/null && [[ -z "${REPORTED[$name]:-}" ]]; then
			REPORTED[$name]=1
			EXITED=1
			echo "$name (pid $pid) exited; its log, $DATA/logs/$name.log, ends with:" >&2
			tail -n 10 "$DATA/logs/$name.log" >&2 || true
		fi
	done
}

on_exit() {
	STOPPING=1
	trap - INT TERM EXIT
	echo
	echo "stopping the cluster and deleting its namespaces ..."
	((${#PROCS[@]} == 0)) || stop_pids "${PROCS[@]}"
	local i
	for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do delete_namespaces "${CREATED[$i]}"; done
	rm -f "$STATE"
	echo "stopped. Data kept in $DATA (run with --fresh for a new cluster)."
}

case ${1:-up} in
up)
	shift || true
	cmd_up "$@"
	;;
--fresh | -n) cmd_up "$@" ;;
down) cmd_down ;;
ctl)
	shift
	cmd_ctl "$@"
	;;
cut) cmd_link down "${2:-}" ;;
heal) cmd_link up "${2:-}" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
