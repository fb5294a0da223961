#!/usr/bin/env bash
# local-cluster.sh starts a raftkv cluster on loopback in the foreground: one
# entrance and three raftd, with data under one directory. Ctrl-C stops
# everything it started (SIGTERM by pid, then SIGKILL after a grace period).
# `make run` runs it; it needs only Go and bash. It refuses to start while
# another run uses the same data directory (flock, where available) or an
# entrance already answers on its port, and exits 1 if the cluster fails to
# start or all of its processes exit by themselves.
#
#   deploy/local-cluster.sh [--fresh]
#
#   --fresh   delete the data directory first (a brand-new cluster)
#
# Environment:
#   RAFTKV_DATA       data directory (default ./tmp/cluster); kept between runs,
#                     so a second run restarts the same cluster
#   RAFTKV_BASE_PORT  entrance UDP port; nodes use the next three (default 7700)
#   RAFTKV_HTTP_PORT  entrance HTTP port (default 7780)
#   BIN               where the binaries are built (default ./bin)
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-./bin}
DATA=${RAFTKV_DATA:-./tmp/cluster}
BASE=${RAFTKV_BASE_PORT:-7700}
HTTP=${RAFTKV_HTTP_PORT:-7780}
HOST=127.0.0.1
GRACE=10 # seconds between SIGTERM and SIGKILL on shutdown

if [[ "${1:-}" == "--fresh" ]]; then
	rm -rf "$DATA"
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--fresh]" >&2
	exit 2
fi

echo "building raftd, entrance and raftctl into $BIN/ ..."
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/raftd ./cmd/entrance ./cmd/raftctl

mkdir -p "$DATA/logs"
DATA=$(cd "$DATA" && pwd)
BIN=$(cd "$BIN" && pwd)

# One run per data directory: the lock is held by this script and, through
# the inherited descriptor, by the daemons it starts.
if command -v flock >/dev/null; then
	exec {lockfd}>"$DATA/.lock"
	if ! flock -n "$lockfd"; then
		echo "error: $DATA is in use by another local cluster (make run); stop that one (Ctrl-C in its terminal)," >&2
		echo "or give this one its own data and ports: RAFTKV_DATA=./tmp/cluster2 RAFTKV_BASE_PORT=7800 RAFTKV_HTTP_PORT=7880 $0" >&2
		exit 1
	fi
fi
# Someone else's entrance on our port would answer our readiness check.
if RAFTCTL_SECRET_FILE= "$BIN/raftctl" --entrance "$HOST:$BASE" --timeout 1s list-peers >/dev/null 2>&1; then
	rc=0
else
	rc=$?
fi
if ((rc == 0 || rc == 4)); then
	echo "error: an entrance already answers on $HOST:$BASE (another cluster?); stop it, or set RAFTKV_BASE_PORT and RAFTKV_HTTP_PORT" >&2
	exit 1
fi


pids=()
names=()
stopping=0

stop_all() {
	stopping=1
	trap - INT TERM EXIT
	echo
	echo "stopping the cluster ..."
	local i
	for i in "${!pids[@]}"; do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	local deadline=$((SECONDS + GRACE))
	for i in "${!pids[@]}"; do
		while kill -0 "${pids[$i]}" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} (pid ${pids[$i]}) did not stop in ${GRACE}s; killing it"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	echo "stopped. Data kept in $DATA (delete it, or run with --fresh, for a new cluster)."
}
trap stop_all EXIT
trap 'exit 130' INT TERM

cmds=()
start() { # name, then the command
	local name=$1
	shift
	"$@" >>"$DATA/logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
	cmds+=("$*")
	echo "started $name (pid $!): $*"
}

# The daemons get process groups of their own (job control on while they
# start): Ctrl-C reaches only this script, which stops them in order
# (SIGTERM, then SIGKILL). Off again after, so that Ctrl-C during the
# script's own `sleep` still runs its trap.
set -m
start entrance "$BIN/entrance" --listen "$HOST:$BASE" --http "$HOST:$HTTP" --data-dir "$DATA/entrance" \
	--discovery-port 0 # a loopback cluster: do not answer LAN discovery broadcasts
for i in 1 2 3; do
	start "n$i" "$BIN/raftd" --name "n$i" --listen "$HOST:$((BASE + i))" --data-dir "$DATA/n$i" \
		--entrance "$HOST:$BASE"
done
set +m

echo "waiting for a leader and two followers ..."
ready=0
for _ in $(seq 1 60); do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} exited during start-up; its log, $DATA/logs/${names[$i]}.log, ends with:" >&2
			tail -n 5 "$DATA/logs/${names[$i]}.log" >&2 || true
			if grep -q "already in use" "$DATA/logs/${names[$i]}.log"; then
				echo "(another program uses one of ports $BASE-$((BASE + 3)) or $HTTP: set RAFTKV_BASE_PORT and RAFTKV_HTTP_PORT)" >&2
			fi
			exit 1
		fi
	done
	if RAFTCTL_SECRET_FILE= "$BIN/raftctl" --entrance "$HOST:$BASE" --timeout 1s list-peers 2>/dev/null |
		awk '$5 == "alive" && $4 == "leader" { l++ } $5 == "alive" && $4 == "follower" { f++ }
			END { exit !(l == 1 && f == 2) }'; then
		ready=1
		break
	fi
	sleep 0.5
done
if ((ready == 0)); then
	echo "the cluster did not form in 30s; see the logs in $DATA/logs" >&2
	exit 1
fi
"$BIN/raftctl" --entrance "$HOST:$BASE" list-peers || true

cat <<USAGE

raftkv is running: entrance $HOST:$BASE (web $HOST:$HTTP), nodes $HOST:$((BASE + 1))-$((BASE + 3)).
Data and logs: $DATA (logs in $DATA/logs).

Try, in another terminal:
  export RAFTCTL_ENTRANCE=$HOST:$BASE
  $BIN/raftctl put greeting hello
  $BIN/raftctl get greeting
  $BIN/raftctl list-peers
  $BIN/raftctl --endpoints $HOST:$((BASE + 1)),$HOST:$((BASE + 2)),$HOST:$((BASE + 3)) get greeting
  curl -s http://$HOST:$HTTP/v1/cluster

Press Ctrl-C to stop the cluster.
USAGE

# Wait until Ctrl-C, or until every process has exited.
declare -A reported=()
while ((stopping == 0)); do
	alive=0
	for i in "${!pids[@]}"; do
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			alive=1
		elif [[ -z "${reported[$i]:-}" ]]; then
			reported[$i]=1
			log="$DATA/logs/${names[$i]}.log"
			# What its last run logged: did it leave the membership?
			if awk '/raftd starting/ { left = 0 } /left the cluster|removed from the cluster/ { left = 1 } END { exit !left }' "$log"; then
				echo "${names[$i]} (pid ${pids[$i]}) left the cluster and exited; see $log. Its data dir cannot rejoin;"
				echo "to add it back as a new node: rm -rf $DATA/${names[$i]} && ${cmds[$i]} >>$log 2>&1 &"
			else
				echo "${names[$i]} (pid ${pids[$i]}) exited; see $log. To start it again (same data):"
				echo "  ${cmds[$i]} >>$log 2>&1 &"
			fi
		fi
	done
	((alive == 1)) || break
	sleep 1
done
if ((stopping == 0)); then
	echo "every process of the cluster exited; see the logs in $DATA/logs" >&2
	exit 1
fi
