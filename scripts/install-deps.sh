#!/usr/bin/env bash
# Installs the real servers that the end-to-end tests start (test/harness):
# redis-server, mariadbd and sysbench from Debian's packages, Debian's
# chromium for the status page's headless-browser test, and nats-server with
# go install. Idempotent: it installs only what is missing, so running
# it on a prepared machine costs a few milliseconds.
set -euo pipefail

NATS_SERVER_VERSION=v2.15.2
APT_PACKAGES=(redis-server redis-tools mariadb-server mariadb-client sysbench chromium)

log() { echo "install-deps: $*"; }

# have NAME: on PATH, or in a system directory that a non-login shell may
# leave off PATH (Debian puts mariadbd in /usr/sbin).
have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	local d
	for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
		[ -x "$d/$1" ] && return 0
	done
	return 1
}

missing=()
for b in redis-server redis-cli mariadbd mariadb-install-db mariadb sysbench chromium; do
	have "$b" || missing+=("$b")
done
if ((${#missing[@]})); then
	log "missing ${missing[*]}: apt-get install ${APT_PACKAGES[*]}"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi
	# Wait for a dpkg lock held by another apt run instead of failing.
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=600 install -y "${APT_PACKAGES[@]}"
	for b in "${missing[@]}"; do
		have "$b" || { log "still missing $b after apt-get install"; exit 1; }
	done
	# Debian may have started its own redis and mariadb services on their
	# default ports. The tests never use those ports, so they are left alone.
else
	log "redis-server, redis-cli, mariadbd, mariadb-install-db, mariadb, sysbench and chromium are present"
fi

if ! command -v go >/dev/null 2>&1; then
	log "go is not on PATH; it is needed to install nats-server"
	exit 1
fi
gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
if command -v nats-server >/dev/null 2>&1; then
	log "nats-server present: $(command -v nats-server) ($(nats-server --version))"
elif [ -x "$gobin/nats-server" ]; then
	log "nats-server present: $gobin/nats-server ($("$gobin/nats-server" --version))"
else
	log "nats-server missing: go install github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION into $gobin"
	go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
	"$gobin/nats-server" --version
fi
