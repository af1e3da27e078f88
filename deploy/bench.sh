#!/usr/bin/env bash
# Reproduces the Performance figures in README.md on this machine: one relay
# node on the embedded broker and the load generator (relay bench, or wrk for
# raw HTTP) on the same host, each scenario against a fresh node.
#
#   ./deploy/bench.sh              # every scenario (about 6 minutes)
#   ./deploy/bench.sh fanout chat  # some of them
#
# Results: one JSON file per scenario in ${OUT:-/tmp/relay-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/relay-bench}
PORT=${PORT:-23000}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
go build -o "$OUT/relay" ./cmd/relay
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

node_pid=""
start_node() {
	RELAY_ADDR=127.0.0.1:$PORT RELAY_LOG_LEVEL=error RELAY_RATE_LIMIT=0 "$@" "$OUT/relay" &
	node_pid=$!
	for _ in $(seq 100); do curl -fs "$URL/healthz" >/dev/null && return; sleep 0.1; done
	echo "bench.sh: node did not start" >&2; exit 1
}
stop_node() { [ -n "$node_pid" ] && kill "$node_pid" && wait "$node_pid" 2>/dev/null || true; node_pid=""; }
trap stop_node EXIT

bench() { # name, then relay bench arguments
	local name=$1; shift
	echo "== $name: relay bench $*"
	"$OUT/relay" bench -url "$URL" -json -quiet "$@" > "$OUT/$name.json"
	cat "$OUT/$name.json"
}

run_http() {
	start_node
	echo "== http: wrk -t2 -c100 -d15s $URL/api/data"
	wrk -t2 -c100 -d15s --latency "$URL/api/data" | tee "$OUT/http-wrk.txt"
	stop_node
}
run_idle() {
	start_node
	bench idle -conns 10000 -ramp 2000 -duration 10s idle
	stop_node
}
run_fanout() {
	start_node
	bench fanout-20 -conns 10000 -rate 20 -duration 30s fanout
	stop_node
	for rate in 25 30; do # the highest rate to 10,000 with zero loss and p99 <= 200 ms
		start_node
		bench "fanout-$rate-x10k" -conns 10000 -rate "$rate" -duration 20s fanout
		stop_node
	done
}
run_chat() {
	start_node
	bench chat -conns 1000 -rooms 10 -every 5s -duration 30s chat
	stop_node
}
run_stall() {
	start_node
	bench stall -conns 9000 -stall 1000 -size 4096 -rate 20 -duration 30s fanout
	stop_node
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(http idle fanout chat stall)
for s in "${scenarios[@]}"; do "run_$s"; done
