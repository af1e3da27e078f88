#!/usr/bin/env bash
# Soak run: one relay node on the embedded broker under relay bench's chat
# and fanout loads at once for a long time (30 minutes by default), its RSS
# and goroutines sampled from /metrics every 10 s. Not part of CI.
#
#   ./deploy/soak.sh          # 30 minutes
#   ./deploy/soak.sh 5m       # shorter
#
# Prints the samples (time, RSS MiB, goroutines) and, at the end, both
# loads' results (lost / duplicated / reordered) and the drift after the
# first minute of warm-up: a healthy node stays flat.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-30m}
OUT=${OUT:-/tmp/relay-soak}
PORT=${PORT:-24000}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
go build -o "$OUT/relay" ./cmd/relay
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RELAY_ADDR=127.0.0.1:$PORT RELAY_LOG_LEVEL=error RELAY_RATE_LIMIT=0 "$OUT/relay" &
node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done

"$OUT/relay" bench -url "$URL" -json -quiet -conns 1000 -rooms 10 -room-prefix soak-chat -every 2s -duration "$DUR" chat > "$OUT/chat.json" &
chat=$!
"$OUT/relay" bench -url "$URL" -json -quiet -conns 2000 -room-prefix soak-fanout -rate 20 -duration "$DUR" fanout > "$OUT/fanout.json" &
fanout=$!

metric() { curl -fs "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
echo "seconds rss_mib goroutines" | tee "$OUT/samples.txt"
start=$(date +%s)
while kill -0 $chat 2>/dev/null || kill -0 $fanout 2>/dev/null; do
	rss=$(metric process_resident_memory_bytes) gor=$(metric go_goroutines)
	awk -v t=$(( $(date +%s) - start )) -v r="$rss" -v g="$gor" 'BEGIN { printf "%d %.1f %d\n", t, r / 1048576, g }' | tee -a "$OUT/samples.txt"
	sleep 10
done
wait $chat $fanout
echo "== chat";   cat "$OUT/chat.json"
echo "== fanout"; cat "$OUT/fanout.json"
awk 'NR > 1 && $1 >= 60 { if (!n++) { r0 = $2; g0 = $3 } r = $2; g = $3 }
     END { if (n) printf "drift after warm-up: RSS %+.1f MiB (%.1f -> %.1f), goroutines %+d (%d -> %d)\n", r - r0, r0, r, g - g0, g0, g }' "$OUT/samples.txt"
