#!/usr/bin/env bash
# Builds local stand-ins for the official images that docker-compose.yml and
# deploy/Dockerfile name, for a Docker engine that cannot pull (no registry),
# and the Compose v2 CLI plugin (`docker compose`) when it is missing.
#
#   ./deploy/standins.sh           # build what is missing; seconds when nothing is
#   ./deploy/standins.sh --force   # rebuild every stand-in image
#   ./deploy/standins.sh --check   # exit 0 if every image is present, 1 if not
#
# A machine that can pull needs none of this: images already present, real
# or stand-in, are left alone. The stand-ins come from Debian's packages:
#
#   debian:bookworm        debootstrap --variant=minbase, then docker import
#   redis:7                Debian's redis-server (7.0), protected mode off, /data
#   nginx:1.27             Debian's nginx (1.22), foreground, reads
#                          /etc/nginx/conf.d/*.conf only, logs to stdout/stderr
#   golang:1.26-bookworm   this machine's /usr/local/go, GOPATH=/go, its CA bundle
#   prom/prometheus:v2.53.3  Debian's prometheus (2.42), run as the official
#                          image runs (config /etc/prometheus/prometheus.yml,
#                          data /prometheus), for `--profile monitoring`
#
# The final stage of deploy/Dockerfile is scratch, which needs no image.
# Needs root (or sudo) for debootstrap, and Debian's mirror and the Go module
# proxy, reached the way this machine reaches them.
#
# Environment:
#   DEBIAN_MIRROR   debootstrap's mirror (default: the first Debian URI in
#                   /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   RELAY_CACHE     where Compose v2 is built (default: $HOME/.cache/relay)
#   COMPOSE_VERSION Compose v2 to build when `docker compose` is missing
#                   (default v2.40.3); COMPOSE_VERSION=none skips it
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=debian:bookworm
REDIS=redis:7
NGINX=nginx:1.27
GOLANG=golang:1.26-bookworm
PROMETHEUS=prom/prometheus:v2.53.3
LABEL=org.relay.standin
CACHE=${RELAY_CACHE:-$HOME/.cache/relay}
COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}

force=0 check=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--check) check=1 ;;
	*) echo "usage: $0 [--force|--check]" >&2; exit 2 ;;
	esac
done

log() { echo "standins: $*" >&2; }
present() { docker image inspect "$1" >/dev/null 2>&1; }
# need IMAGE: true when IMAGE must be built (missing, or --force and ours).
need() {
	present "$1" || return 0
	[ "$force" = 1 ] && [ -n "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" ]
}

if ! docker info >/dev/null 2>&1; then
	log "no Docker engine answers: nothing to do"
	exit 1
fi

if [ "$check" = 1 ]; then
	for img in $REDIS $NGINX $GOLANG $PROMETHEUS; do present "$img" || { log "missing $img"; exit 1; }; done
	exit 0
fi

export DOCKER_BUILDKIT=0 # the legacy builder: no buildx here
build() { # build TAG CONTEXT_DIR  (Dockerfile on stdin)
	local tag=$1 ctx=$2
	log "building $tag"
	if ! docker build -q --label "$LABEL=1" -t "$tag" -f - "$ctx" >"$tmp/build.log" 2>&1; then
		tail -n 30 "$tmp/build.log" >&2
		exit 1
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

# --- debian:bookworm, from debootstrap -------------------------------------
if { need $REDIS || need $NGINX || need $GOLANG || need $PROMETHEUS; } && need $BASE; then
	mirror=${DEBIAN_MIRROR:-}
	if [ -z "$mirror" ]; then
		mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null |
			grep -oE 'https?://[^ ]*' | head -n1 || true)
		mirror=${mirror:-http://deb.debian.org/debian}
	fi
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
		log "installing debootstrap from Debian's packages"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	log "debootstrap bookworm from $mirror (about a minute)"
	rootfs=$tmp/rootfs
	if ! $sudo env PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
		tail -n 20 "$tmp/debootstrap.log" >&2
		exit 1
	fi
	# Like the official image: no apt caches, and a sources file naming the mirror.
	$sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	$sudo tar -C "$rootfs" -c . | docker import \
		--change "LABEL $LABEL=1" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' - $BASE >/dev/null
	$sudo rm -rf "$rootfs"
	log "imported $BASE"
fi

# --- redis:7 ----------------------------------------------------------------
if need $REDIS; then
	mkdir -p "$tmp/empty"
	build $REDIS "$tmp/empty" <<-EOF
		FROM $BASE
		RUN apt-get update -qq \\
		 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \\
		 && rm -rf /var/lib/apt/lists/* \\
		 && mkdir -p /data && chown redis:redis /data
		WORKDIR /data
		VOLUME /data
		USER redis
		EXPOSE 6379
		# The official image turns protected mode off when run without a config
		# file, so that other containers can connect.
		CMD ["redis-server", "--protected-mode", "no"]
	EOF
fi

# --- nginx:1.27 -------------------------------------------------------------
if need $NGINX; then
	mkdir -p "$tmp/empty"
	build $NGINX "$tmp/empty" <<-EOF
		FROM $BASE
		RUN apt-get update -qq \\
		 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \\
		 && rm -rf /var/lib/apt/lists/* \\
		 && rm -f /etc/nginx/sites-enabled/* /etc/nginx/conf.d/* \\
		 && ln -sf /dev/stdout /var/log/nginx/access.log \\
		 && ln -sf /dev/stderr /var/log/nginx/error.log
		EXPOSE 80
		STOPSIGNAL SIGQUIT
		CMD ["nginx", "-g", "daemon off;"]
	EOF
fi

# --- prom/prometheus --------------------------------------------------------
if need $PROMETHEUS; then
	mkdir -p "$tmp/empty"
	build $PROMETHEUS "$tmp/empty" <<-EOF
		FROM $BASE
		RUN apt-get update -qq \\
		 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \\
		 && rm -rf /var/lib/apt/lists/* \\
		 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
		USER nobody
		WORKDIR /prometheus
		EXPOSE 9090
		ENTRYPOINT ["/usr/bin/prometheus"]
		CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
	EOF
fi

# --- golang:1.26-bookworm ---------------------------------------------------
if need $GOLANG; then
	goroot=$(go env GOROOT)
	ver=$(go env GOVERSION)
	ctx=$tmp/golang
	mkdir -p "$ctx/certs"
	cp -a "$goroot" "$ctx/go"
	rm -rf "$ctx/go/pkg/obj" "$ctx/go/.git"
	# This machine's CA bundle: whatever it trusts for the Go module proxy.
	cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/certs/"
	build $GOLANG "$ctx" <<-EOF
		FROM $BASE
		COPY certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
		COPY go /usr/local/go
		ENV GOLANG_VERSION=${ver#go} GOTOOLCHAIN=local GOPATH=/go \\
		    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go && go version
		WORKDIR /go
	EOF
fi

for img in $REDIS $NGINX $GOLANG; do
	present "$img" || { log "$img is still missing"; exit 1; }
done
[ $((SECONDS - started)) -lt 2 ] || log "images ready after $((SECONDS - started)) s"

# --- docker compose (v2) ----------------------------------------------------
# Users run Compose v2; Debian's docker-compose is v1. Build v2 from the Go
# module proxy once, keep it in $CACHE, and install it as the CLI plugin.
if [ "$COMPOSE_VERSION" != none ] && ! docker compose version >/dev/null 2>&1; then
	bin=$CACHE/compose-$COMPOSE_VERSION/docker-compose
	if [ ! -x "$bin" ]; then
		log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (about 2 minutes)"
		# `go install module@version` refuses compose's go.mod (it has
		# exclude directives): build inside a copy of the module instead.
		mod=github.com/docker/compose/v2
		dir=$(cd "$tmp" && GOFLAGS= go mod download -json "$mod@$COMPOSE_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		cp -r "$dir" "$tmp/compose"
		chmod -R u+w "$tmp/compose"
		mkdir -p "$(dirname "$bin")"
		(cd "$tmp/compose" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
			-ldflags "-s -w -X $mod/internal.Version=$COMPOSE_VERSION" -o "$bin.tmp" ./cmd)
		mv "$bin.tmp" "$bin"
	fi
	plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
	mkdir -p "$plugins"
	ln -sfn "$bin" "$plugins/docker-compose"
	docker compose version >&2
fi
