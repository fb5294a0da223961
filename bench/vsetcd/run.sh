#!/usr/bin/env bash
# run.sh measures raftkv against etcd on this machine, side by side: a
# three-member etcd cluster and a three-node raftkv cluster (entrance + three
# raftd), both on loopback with their data on the same disk and fsync on,
# driven one after the other by the same load generator (vsetcd, the Go
# program beside this script) with the same workload. Rounds alternate
# etcd, raftkv, etcd, raftkv, ... so machine noise shows in the numbers.
# Each cluster starts from empty data directories and is stopped (its own
# pids only) before the next starts. See bench/vsetcd/README.md.
#
#   bench/vsetcd/run.sh [--rounds N] [--duration D] [--warmup D] [--clients 1,16,64]
#                       [--ops put,get] [--keys K] [--value-size B] [--label TEXT]
#                       [--etcd-mode leader|all] [--idle D] [--perf] [--baseline REV]
#
#   --baseline REV   compare raftkv with raftkv as of git revision REV (e.g.
#            main) instead of etcd: REV's raftd and entrance, from
#            `git archive REV`, take etcd's place in every round (etcd is then
#            not needed). For checking a change: ratios within one run.
#   --perf   also record each cluster's processes with `perf record` (Linux
#            perf) during its run, into perf-<system>-r<round>.data with a
#            flat profile beside it (.txt). Profiling costs CPU: numbers of
#            a --perf run are for reading profiles, not for the table.
#
# Environment:
#   VSETCD_WORK   directory for binaries, data, logs and results
#                 (default ./tmp/vsetcd in the repository; the disk measured)
#   ETCD          the etcd binary (default: etcd on PATH)
#
# It installs nothing. Without etcd it says what to install and exits 3.
# It is not part of `make test` or CI; `make bench-etcd` runs it.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)

ROUNDS=2
DURATION=6s
WARMUP=1s
CLIENTS=1,16,64
OPS=put,get
KEYS=1000
VALUE_SIZE=256
LABEL=
ETCD_MODE=leader
IDLE=3s
PERF=0
BASELINE=
GRACE=10 # seconds between SIGTERM and SIGKILL when stopping a cluster

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
}
while (($# > 0)); do
	if [[ $1 == --* && $1 != --perf && $1 != --help && $# -lt 2 ]]; then
		echo "run.sh: $1 needs a value" >&2
		exit 2
	fi
	case $1 in
	--rounds) ROUNDS=$2 ;;
	--duration) DURATION=$2 ;;
	--warmup) WARMUP=$2 ;;
	--clients) CLIENTS=$2 ;;
	--ops) OPS=$2 ;;
	--keys) KEYS=$2 ;;
	--value-size) VALUE_SIZE=$2 ;;
	--label) LABEL=$2 ;;
	--etcd-mode) ETCD_MODE=$2 ;;
	--idle) IDLE=$2 ;;
	--baseline) BASELINE=$2 ;;
	--perf)
		PERF=1
		shift
		continue
		;;
	-h | --help) usage ;;
	*)
		echo "run.sh: unknown argument $1" >&2
		usage
		;;
	esac
	shift 2
done

ETCD=${ETCD:-$(command -v etcd || true)}
if [[ -z "$BASELINE" && ( -z "$ETCD" || ! -x "$ETCD" ) ]]; then
	cat >&2 <<'MSG'
etcd is not installed, so there is nothing to compare raftkv with.
Install it, then run this script again:
  Debian/Ubuntu:  sudo apt-get install etcd-server     (etcd 3.4; etcd-client adds etcdctl)
  elsewhere:      put an etcd 3.4 or newer binary on PATH, or set ETCD=/path/to/etcd
This script installs nothing by itself.
MSG
	exit 3
fi
if ((PERF == 1)) && ! command -v perf >/dev/null; then
	echo "run.sh: --perf needs Linux perf (Debian: apt-get install linux-perf)" >&2
	exit 3
fi
command -v go >/dev/null || {
	echo "run.sh: go is needed to build raftkv and the load generator" >&2
	exit 3
}

WORK=${VSETCD_WORK:-$ROOT/tmp/vsetcd}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
BIN=$WORK/bin
DATA=$WORK/data
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$WORK/results-$STAMP
mkdir -p "$BIN" "$DATA" "$OUT/logs"
# The label names the raftkv code measured: the last commit outside bench/ and docs/.
[[ -n "$LABEL" ]] || LABEL=$(git log -1 --format=%h -- . ':(exclude)bench' ':(exclude)docs' 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain -- . ':(exclude)bench' ':(exclude)docs' ':(exclude)tmp' 2>/dev/null)" ]]; then
	LABEL="$LABEL+dirty"
fi

echo "building raftd, entrance, raftctl and the load generator into $BIN/ ..."
go build -o "$BIN/" ./cmd/raftd ./cmd/entrance ./cmd/raftctl
(cd bench/vsetcd && go build -o "$BIN/vsetcd" .)
if [[ -n "$BASELINE" ]]; then
	BASE_REV=$(git rev-parse --short "$BASELINE^{commit}") || {
		echo "run.sh: --baseline $BASELINE is not a git revision here" >&2
		exit 2
	}
	echo "building raftd and entrance as of $BASELINE ($BASE_REV) into $BIN/base/ ..."
	rm -rf "$WORK/base-src"
	mkdir -p "$WORK/base-src" "$BIN/base"
	git archive "$BASE_REV" | tar -x -C "$WORK/base-src"
	(cd "$WORK/base-src" && go build -o "$BIN/base/" ./cmd/raftd ./cmd/entrance)
	rm -rf "$WORK/base-src"
fi

mapfile -t PORTS < <("$BIN/vsetcd" ports 14)
E_CLIENT=("${PORTS[@]:0:3}")
E_PEER=("${PORTS[@]:3:3}")
R_UDP=("${PORTS[@]:6:4}") # entrance, n1, n2, n3
R_HTTP=("${PORTS[@]:10:4}")
HOST=127.0.0.1

pids=()
names=()
perf_pid=

perf_start() { # system, round
	((PERF == 1)) || return 0
	perf record -q -F 499 --call-graph fp -p "$(join_by , "${pids[@]}")" -o "$OUT/perf-$1-r$2.data" \
		>>"$OUT/logs/perf-$1-r$2.log" 2>&1 &
	perf_pid=$!
	sleep 0.5
}

perf_stop() { # system, round
	[[ -n "$perf_pid" ]] || return 0
	kill -INT "$perf_pid" 2>/dev/null || true
	wait "$perf_pid" 2>/dev/null || true
	perf_pid=
	perf report -i "$OUT/perf-$1-r$2.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.5 \
		>"$OUT/perf-$1-r$2.txt" 2>/dev/null || true
	echo "profile: $OUT/perf-$1-r$2.txt (perf report -i $OUT/perf-$1-r$2.data for more)"
}

stop_cluster() {
	local i
	if [[ -n "$perf_pid" ]]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		perf_pid=
	fi
	for i in "${!pids[@]}"; do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	local deadline=$((SECONDS + GRACE))
	for i in "${!pids[@]}"; do
		while kill -0 "${pids[$i]}" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} (pid ${pids[$i]}) did not stop in ${GRACE}s; killing it" >&2
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	pids=()
	names=()
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

start() { # log name, then the command
	local name=$1
	shift
	"$@" >>"$OUT/logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

check_alive() {
	local i
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} exited; its log $OUT/logs/${names[$i]}.log ends with:" >&2
			tail -n 20 "$OUT/logs/${names[$i]}.log" >&2 || true
			return 1
		fi
	done
}

join_by() {
	local IFS=$1
	shift
	echo "$*"
}

start_etcd() { # round
	rm -rf "$DATA/etcd"
	mkdir -p "$DATA/etcd"
	local initial=() i
	for i in 0 1 2; do
		initial+=("e$((i + 1))=http://$HOST:${E_PEER[$i]}")
	done
	for i in 0 1 2; do
		start "etcd-r$1-e$((i + 1))" "$ETCD" --name "e$((i + 1))" --data-dir "$DATA/etcd/e$((i + 1))" \
			--listen-client-urls "http://$HOST:${E_CLIENT[$i]}" --advertise-client-urls "http://$HOST:${E_CLIENT[$i]}" \
			--listen-peer-urls "http://$HOST:${E_PEER[$i]}" --initial-advertise-peer-urls "http://$HOST:${E_PEER[$i]}" \
			--initial-cluster "$(join_by , "${initial[@]}")" --initial-cluster-state new \
			--initial-cluster-token "vsetcd-$STAMP-$1" --logger zap --log-outputs stderr
	done
}

start_raftkv() { # round, name, binary directory
	rm -rf "$DATA/raftkv"
	mkdir -p "$DATA/raftkv"
	start "$2-r$1-entrance" "$3/entrance" --listen "$HOST:${R_UDP[0]}" --http "$HOST:${R_HTTP[0]}" \
		--data-dir "$DATA/raftkv/entrance" --discovery-port 0
	local i
	for i in 1 2 3; do
		start "$2-r$1-n$i" "$3/raftd" --name "n$i" --listen "$HOST:${R_UDP[$i]}" --data-dir "$DATA/raftkv/n$i" \
			--entrance "$HOST:${R_UDP[0]}" --http "$HOST:${R_HTTP[$i]}"
	done
}

machine_facts() { # title
	echo "== machine ($1, $(date -u +%H:%M:%SZ))"
	echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
	echo "kernel: $(uname -r); memory: $(free -h | awk '/^Mem:/ {print $2}')"
	echo "disk under $DATA: $(df -h "$DATA" | awk 'NR == 2 {print $1, $2}') ($(stat -f -c %T "$DATA"))"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$BIN/vsetcd" fsync --dir "$DATA" --duration 2s
}

{
	echo "== versions"
	echo "raftkv: code at ${LABEL%+dirty} ($(git log -1 --format=%s "${LABEL%+dirty}" 2>/dev/null | cut -c1-70))$([[ $LABEL == *+dirty ]] && echo ", with uncommitted changes"); tree at $(git rev-parse --short HEAD 2>/dev/null)"
	if [[ -n "$BASELINE" ]]; then
		echo "baseline: raftkv as of $BASELINE, $BASE_REV ($(git log -1 --format=%s "$BASE_REV" | cut -c1-70))"
	else
		echo "etcd: $("$ETCD" --version | head -1 | sed 's/etcd Version: //')"
	fi
	echo "go: $(go version | cut -d' ' -f3)"
	echo "label: $LABEL; rounds $ROUNDS; idle $IDLE; ops $OPS; clients $CLIENTS; duration $DURATION (+ warmup $WARMUP); keys $KEYS; values $VALUE_SIZE B; etcd-mode $ETCD_MODE"
	machine_facts start
} | tee "$OUT/machine.txt"

common=(--label "$LABEL" --idle "$IDLE" --ops "$OPS" --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP"
	--keys "$KEYS" --value-size "$VALUE_SIZE" --out "$OUT/results.jsonl")

run_raftkv() { # round, name, binary directory
	echo "== round $1: $2"
	start_raftkv "$1" "$2" "$3"
	sleep 0.5
	check_alive
	local eps=() mets=() i
	for i in 1 2 3; do
		eps+=("$HOST:${R_UDP[$i]}")
		mets+=("http://$HOST:${R_HTTP[$i]}/metrics")
	done
	perf_start "$2" "$1"
	"$BIN/vsetcd" run --system raftkv --name "$2" --round "$1" --entrance "$HOST:${R_UDP[0]}" --endpoints "$(join_by , "${eps[@]}")" \
		--pids "$(join_by , "${pids[@]}")" --metrics "$(join_by , "${mets[@]}")" "${common[@]}"
	perf_stop "$2" "$1"
	check_alive
	stop_cluster
}

run_etcd() { # round
	echo "== round $1: etcd"
	start_etcd "$1"
	sleep 0.5
	check_alive
	local eps=() mets=() i
	for i in 0 1 2; do
		eps+=("$HOST:${E_CLIENT[$i]}")
		mets+=("http://$HOST:${E_CLIENT[$i]}/metrics")
	done
	perf_start etcd "$1"
	"$BIN/vsetcd" run --system etcd --round "$1" --etcd-mode "$ETCD_MODE" --endpoints "$(join_by , "${eps[@]}")" \
		--pids "$(join_by , "${pids[@]}")" --metrics "$(join_by , "${mets[@]}")" "${common[@]}"
	perf_stop etcd "$1"
	check_alive
	stop_cluster
}

for round in $(seq 1 "$ROUNDS"); do
	if [[ -n "$BASELINE" ]]; then
		run_raftkv "$round" "raftkv@$BASE_REV" "$BIN/base"
	else
		run_etcd "$round"
	fi
	run_raftkv "$round" raftkv "$BIN"
done

machine_facts end | tee -a "$OUT/machine.txt"
echo
"$BIN/vsetcd" report "$OUT/results.jsonl" | tee "$OUT/report.txt"
"$BIN/vsetcd" report --markdown "$OUT/results.jsonl" >"$OUT/report.md"
rm -rf "$DATA"
echo "results: $OUT (results.jsonl, report.txt, report.md, machine.txt, logs/)"
