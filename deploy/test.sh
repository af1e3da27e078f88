#!/usr/bin/env bash
# Runs every relay test on a fresh Debian machine: installs what the tests
# need from Debian's packages when it is missing, then runs the Go tests with
# the race detector (fuzz seed corpora included) and vets the code.
#
#   ./deploy/test.sh            # everything
#   ./deploy/test.sh -run Chat  # extra flags go to `go test`
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real, by the command each provides.
need_packages() {
	local missing=()
	local cmd pkg
	for pair in "$@"; do
		cmd=${pair%%:*} pkg=${pair##*:}
		command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "test.sh: installing ${missing[*]} from Debian's packages" >&2
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_packages redis-server:redis-server nginx:nginx chromium:chromium

# The docker compose test (internal/composetest) needs images no registry
# can provide here; stand-ins are built from Debian's packages, once.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
	echo "test.sh: Docker answers: stand-in images and Compose v2 (deploy/standins.sh)" >&2
	./deploy/standins.sh
else
	echo "test.sh: no Docker engine answers: the docker compose test (internal/composetest) will be SKIPPED" >&2
fi

echo "test.sh: go vet" >&2
go vet ./...
echo "test.sh: go test -race" >&2
go test -race -count=1 -timeout 20m "$@" ./...
# Allocation checks mean nothing under the race detector; run them plainly.
echo "test.sh: allocation checks" >&2
go test -count=1 -run 'Allocations' "$@" ./...
# The Kubernetes manifests, decoded strictly and checked without a cluster:
# a module of its own, so Kubernetes' modules stay out of relay's go.mod.
echo "test.sh: Kubernetes manifests (deploy/k8s)" >&2
(cd deploy/k8s/validate && go test -count=1 ./...)
