#!/usr/bin/env bash
# Reproduces the Performance figures in README.md on this machine: one relay
# node on the embedded broker and the load generator (relay bench, or wrk for
# raw HTTP) on the same host, each scenario against a fresh node.
#
#   ./deploy/bench.sh              # every single-node scenario (about 6 minutes)
#   ./deploy/bench.sh fanout chat  # some of them
#   ./deploy/bench.sh resume       # fanout with history, then with subscribers cut and resumed
#   ./deploy/bench.sh handshake    # dial → welcome at 1,000 connects/s into a lobby of 10,000
#   ./deploy/bench.sh cluster      # the docker compose cluster through nginx (about 5 minutes),
#                                  # ending with a rolling restart of every replica under fanout
#
# Results: one JSON file per scenario in ${OUT:-/tmp/relay-bench}; the
# cluster scenario adds CPU per container and per delivery (cluster-cpu.txt).
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
	echo "== $name: relay bench $* (load: $(cut -d' ' -f1-3 /proc/loadavg))"
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
# handshake: 10,000 clients connect at 1,000 a second into one lobby, which
# gets its presence event every second: a new client's welcome must not wait
# behind that burst of writes (handshake p99 in the report).
run_handshake() {
	start_node
	bench handshake -conns 10000 -ramp 1000 -duration 5s idle
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
# resume: fanout to 10,000 with history on (RELAY_HISTORY_SIZE, 200 by
# default), then the same with subscribers cut from the client side at
# DROP_RATE a second, each reconnecting with its positions (?epoch&since):
# every message once per receiver, in order, live or replayed.
DROP_RATE=${DROP_RATE:-100}
run_resume() {
	start_node
	bench resume-history -conns 10000 -rate 20 -duration 30s fanout
	stop_node
	start_node
	bench "resume-drops-$DROP_RATE" -conns 10000 -rate 20 -duration 30s -drop-rate "$DROP_RATE" fanout
	stop_node
}
run_stall() {
	start_node
	bench stall -conns 9000 -stall 1000 -size 4096 -rate 20 -duration 30s fanout
	stop_node
}

# ---- cluster: docker-compose.yml as shipped, driven through nginx -------------
#
# Redis, RELAY_REPLICAS (3) relay replicas and nginx from docker-compose.yml
# (project relaybench, nginx published on 127.0.0.1:$CLUSTER_PORT), then:
# 10,000 idle clients; fanout to 10,000 at 5 and at 20 msg/s; 10,000 held
# while the cluster scales to 5 and 3,000 more connect. relay bench reads
# every replica's /metrics (-metrics), and this script samples each
# container's CPU from its cgroup to say where the time goes per delivery.
CLUSTER_PORT=${CLUSTER_PORT:-28080}
CLUSTER_CONNS=${CLUSTER_CONNS:-10000}
CLUSTER_PROJECT=${CLUSTER_PROJECT:-relaybench}
CLUSTER_KEY=bench-key

# CLUSTER_PHASES picks phases (default all); CLUSTER_NGINX_CONF runs nginx
# with another main config than nginx/nginx.conf, to compare tunings.
CLUSTER_PHASES=${CLUSTER_PHASES:-idle fanout-5 fanout-20 scale rolling}
CLUSTER_NGINX_CONF=${CLUSTER_NGINX_CONF:-}

cluster_compose() {
	local files=(--file docker-compose.yml)
	[ -z "$CLUSTER_NGINX_CONF" ] || files+=(--file "$OUT/cluster-nginx.yml")
	DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 COMPOSE_BAKE=false \
		docker compose --project-name "$CLUSTER_PROJECT" --project-directory . \
		"${files[@]}" --env-file "$OUT/cluster.env" "$@"
}
cluster_down() { cluster_compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true; }

# cluster_target prints the base URL relay bench uses: nginx's published
# port, unless Docker's userland proxy behind it would run out of open files
# (it holds 6 per connection and drops every connection when it runs out),
# then nginx's address on the compose network (reachable from a Linux host).
cluster_target() {
	local need=$1 pid limit
	pid=$(pgrep -f "docker-proxy .*-host-ip 127.0.0.1 -host-port $CLUSTER_PORT " | head -n1 || true)
	if [ -n "$pid" ]; then
		limit=$(awk '/^Max open files/ {print $5}' "/proc/$pid/limits")
		if [ "$limit" != unlimited ] && [ $((limit / 6)) -lt $((need + 500)) ]; then
			echo "cluster: docker-proxy (pid $pid) behind 127.0.0.1:$CLUSTER_PORT has $limit open files, 6 per connection:" \
				"it would drop everyone at ~$((limit / 6)); driving nginx's container address instead" >&2
			echo "http://$(cluster_ip nginx):80"
			return
		fi
	fi
	echo "http://127.0.0.1:$CLUSTER_PORT"
}
cluster_ids() { cluster_compose ps -q "$@"; }
cluster_ip() {
	docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$(cluster_ids "$1" | head -n1)" | awk '{print $1}'
}
cluster_metrics() { # every replica's base URL, comma-separated
	local urls=() id
	for id in $(cluster_ids relay); do
		urls+=("http://$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" | awk '{print $1}'):3000")
	done
	(IFS=,; echo "${urls[*]}")
}

# cpu_sampler FILE: every 0.5 s, "unix_ms nginx relay redis busy irq" CPU
# nanoseconds: the containers' from their cpuacct cgroups (relay summed over
# replicas), then the whole machine's busy time and its time in interrupts
# (the network stack's receive side, charged to no container), from
# /proc/stat; while $OUT/cluster.sampling exists (at most 10 minutes).
cpu_sampler() {
	local file=$1 ids svc id total line n
	local -A cg
	for svc in nginx relay redis; do
		cg[$svc]=""
		for id in $(docker ps -q --no-trunc --filter "label=com.docker.compose.project=$CLUSTER_PROJECT" \
			--filter "label=com.docker.compose.service=$svc"); do
			for f in /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat; do
				[ -e "$f" ] && cg[$svc]+=" $f"
			done
		done
	done
	: >"$file"
	for ((n = 0; n < 1200; n++)); do
		[ -e "$OUT/cluster.sampling" ] || break
		line=$(date +%s%3N)
		for svc in nginx relay redis; do
			total=0
			for f in ${cg[$svc]}; do
				case $f in
				*cpuacct.usage) total=$((total + $(cat "$f"))) ;;
				*cpu.stat) total=$((total + $(awk '/^usage_usec/ {print $2 * 1000}' "$f"))) ;;
				esac
			done
			line+=" $total"
		done
		line+=" $(awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.0f %.0f", ($2+$3+$4+$7+$8+$9) * 1e9 / hz, ($7+$8) * 1e9 / hz}' /proc/stat)"
		echo "$line" >>"$file"
		sleep 0.5
	done
}

# cluster_bench NAME ARGS...: relay bench through nginx with CPU sampled per
# container; prints the report and where the CPU went in the measured phase.
cluster_bench() {
	local name=$1; shift
	echo "== cluster $name: relay bench $* (load: $(cut -d' ' -f1-3 /proc/loadavg))"
	touch "$OUT/cluster.sampling"
	cpu_sampler "$OUT/cluster-$name.cpu" &
	local sampler=$!
	"$OUT/relay" bench -url "$URL" -metrics "$(cluster_metrics)" -api-key "$CLUSTER_KEY" -json -quiet "$@" >"$OUT/cluster-$name.json" || {
		rm -f "$OUT/cluster.sampling"
		wait "$sampler"
		return 1
	}
	rm -f "$OUT/cluster.sampling"
	wait "$sampler"
	cat "$OUT/cluster-$name.json"
	cluster_cpu "$name" | tee -a "$OUT/cluster-cpu.txt"
}

# cluster_cpu NAME: CPU per container over the report's measured phase (or
# the whole run for idle), in cores and in microseconds per delivery.
cluster_cpu() {
	local name=$1 from to delivered benchcpu
	from=$(sed -n 's/.*"measured_from_unix_ms": \([0-9]*\).*/\1/p' "$OUT/cluster-$name.json")
	to=$(sed -n 's/.*"measured_to_unix_ms": \([0-9]*\).*/\1/p' "$OUT/cluster-$name.json")
	delivered=$(sed -n 's/.*"delivered": \([0-9]*\).*/\1/p' "$OUT/cluster-$name.json")
	benchcpu=$(sed -n 's/.*"bench_cpu_percent": \([0-9.]*\).*/\1/p' "$OUT/cluster-$name.json")
	awk -v name="$name" -v from="${from:-0}" -v to="${to:-0}" -v delivered="${delivered:-0}" \
		-v benchcpu="${benchcpu:-0}" -v cores="$(nproc)" '
		{ t[NR] = $1; for (i = 2; i <= 6; i++) c[NR, i] = $i }
		END {
			a = 1; b = NR
			if (from > 0) { for (i = 1; i <= NR; i++) { if (t[i] <= from) a = i; if (t[i] <= to) b = i } }
			secs = (t[b] - t[a]) / 1000
			if (secs <= 0) { print name ": no CPU samples"; exit }
			split("nginx relay redis", svc, " ")
			what = "the whole run"
			if (from > 0) what = "the measured phase"
			printf "%s: CPU over %.1f s (%s)\n", name, secs, what
			for (i = 2; i <= 4; i++) {
				cpu = (c[b, i] - c[a, i]) / 1e9
				line = sprintf("  %-6s %5.1f %% of a core", svc[i - 1], 100 * cpu / secs)
				if (delivered > 0) line = line sprintf(", %.2f us per delivery", 1e6 * cpu / delivered)
				print line
			}
			irq = (c[b, 6] - c[a, 6]) / 1e9
			line = sprintf("  kernel interrupts (network receive) %.1f %% of a core", 100 * irq / secs)
			if (delivered > 0) line = line sprintf(", %.2f us per delivery", 1e6 * irq / delivered)
			print line
			if (benchcpu > 0) {
				line = sprintf("  load generator %.1f %% of a core", benchcpu)
				if (delivered > 0) line = line sprintf(", %.2f us per delivery", 1e4 * benchcpu * secs / delivered)
				print line
			}
			printf "  machine busy %.0f %% of %d cores\n", 100 * (c[b, 5] - c[a, 5]) / 1e9 / secs, cores
		}' "$OUT/cluster-$name.cpu"
}

run_cluster() {
	local nofile
	nofile=$(ulimit -Hn)
	if [ "$nofile" = unlimited ] || [ "$nofile" -ge 65536 ]; then nofile=65536; fi
	cat >"$OUT/cluster.env" <<-EOF
		RELAY_PORT=127.0.0.1:$CLUSTER_PORT
		RELAY_API_KEY=$CLUSTER_KEY
		RELAY_IMAGE=relay:bench
		RELAY_REPLICAS=3
		RELAY_LOG_LEVEL=warn
		RELAY_NOFILE=$nofile
	EOF
	if [ -n "$CLUSTER_NGINX_CONF" ]; then
		printf 'services:\n  nginx:\n    volumes:\n      - %s:/etc/nginx/nginx.conf:ro\n' \
			"$(realpath "$CLUSTER_NGINX_CONF")" >"$OUT/cluster-nginx.yml"
		echo "cluster: nginx runs $CLUSTER_NGINX_CONF"
	fi
	./deploy/standins.sh >/dev/null
	cluster_down
	trap 'cluster_down; stop_node' EXIT
	echo "== cluster: docker compose up --build (RELAY_NOFILE=$nofile)"
	cluster_compose up -d --build --wait --quiet-pull >/dev/null
	URL=$(cluster_target "$CLUSTER_CONNS")
	echo "cluster: relay bench drives $URL; replicas $(cluster_metrics)"
	: >"$OUT/cluster-cpu.txt"

	local phase
	for phase in $CLUSTER_PHASES; do
		case $phase in
		idle) cluster_bench idle -conns "$CLUSTER_CONNS" -ramp 2000 -duration 10s idle ;;
		fanout-*) cluster_bench "$phase" -conns "$CLUSTER_CONNS" -ramp 2000 -rate "${phase#fanout-}" -publishers 8 -duration 30s fanout ;;
		scale) cluster_scale ;;
		rolling) cluster_rolling ;;
		*) echo "cluster: unknown phase $phase" >&2; return 1 ;;
		esac
	done
	cluster_down
	trap stop_node EXIT
}

# cluster_scale: with 10,000 held, scale to 5 replicas; where do new
# connections go?
cluster_scale() {
	echo "== cluster scale: $CLUSTER_CONNS held, scale to 5, 3,000 more connect"
	"$OUT/relay" bench -url "$URL" -json -quiet -conns "$CLUSTER_CONNS" -ramp 2000 -duration 60s idle >"$OUT/cluster-held.json" &
	local held=$!
	sleep 10
	cluster_compose up -d --no-recreate --scale relay=5 --wait >/dev/null
	sleep 6 # nginx looks the service name up again every 5 s
	# (Its disconnect time counts the held clients too: it waits for them.)
	"$OUT/relay" bench -url "$URL" -metrics "$(cluster_metrics)" -json -quiet -conns 3000 -ramp 1000 -duration 5s idle | tee "$OUT/cluster-after-scale.json"
	wait "$held"
	cat "$OUT/cluster-held.json"
}

# cluster_rolling: fanout to CLUSTER_CONNS through nginx with -resume while
# every relay replica is restarted in turn (docker restart: SIGTERM, 1012,
# up again), each healthy before the next: 0 lost, 0 duplicated, 0
# reordered, every resume recovered.
cluster_rolling() {
	local conns=$CLUSTER_CONNS id n=0 began
	echo "== cluster rolling: relay bench fanout -resume to $conns, every replica restarted in turn (load: $(cut -d' ' -f1-3 /proc/loadavg))"
	: >"$OUT/cluster-rolling.log"
	"$OUT/relay" bench -url "$URL" -api-key "$CLUSTER_KEY" -json -resume -conns "$conns" -ramp 2000 \
		-rate 20 -publishers 8 -duration 60s fanout >"$OUT/cluster-rolling.json" 2>"$OUT/cluster-rolling.log" &
	local bench_pid=$!
	for _ in $(seq 600); do grep -q publishing "$OUT/cluster-rolling.log" && break; sleep 0.1; done
	began=$(date +%s)
	for id in $(cluster_ids relay); do
		n=$((n + 1))
		docker restart --time 10 "$id" >/dev/null
		for _ in $(seq 180); do
			[ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] && break
			sleep 0.5
		done
		echo "cluster rolling: replica $n restarted and healthy at +$(($(date +%s) - began)) s"
	done
	wait "$bench_pid" || { tail -n 20 "$OUT/cluster-rolling.log"; return 1; }
	cat "$OUT/cluster-rolling.json"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(http idle fanout chat stall)
for s in "${scenarios[@]}"; do "run_$s"; done
