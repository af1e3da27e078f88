#!/usr/bin/env bash
# Fuzzes every decoder that takes outside input, longer than the seed
# corpora deploy/test.sh runs: client frames, the resume query, notify
# bodies (through the real handler) and JWTs.
#
#   ./deploy/fuzz.sh            # 1,000,000 inputs per target
#   ./deploy/fuzz.sh 100000     # fewer
#   FUZZ_FLAGS=-parallel=1 ./deploy/fuzz.sh   # leave a core free
#
# A failing input is written under testdata/fuzz/ of its package, where
# `go test` then runs it on every test run; the script stops at the first.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
targets=(
	"./internal/protocol FuzzDecodeClient"
	"./internal/protocol FuzzParseResume"
	"./internal/server FuzzNotifyBody"
	"./internal/auth FuzzVerifierUser"
)
for t in "${targets[@]}"; do
	set -- $t
	start=$(date +%s)
	if ! out=$(go test -run XXX -fuzz "^$2\$" -fuzztime "${n}x" ${FUZZ_FLAGS:-} "$1" 2>&1); then
		echo "$out" | tail -20
		echo "fuzz.sh: $2 FAILED" >&2
		exit 1
	fi
	echo "fuzz.sh: $2 ($1): $n inputs, no failure, $(( $(date +%s) - start )) s"
done
