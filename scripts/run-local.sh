#!/usr/bin/env bash
# The main job in one command (`make run`): install what is missing, build,
# and run the demo (examples/demo): a local group of real processes — a
# nats-server, three redis-servers and three replicar nodes on free
# loopback ports, state under .run/group — with a live workload, the
# leader SIGKILLed, the failover shown as it happens, the killed node back
# as a follower and every acknowledged write read back. The group stays up
# afterwards; `make stop` (`bash scripts/run-local.sh stop`) stops it.
#
#   bash scripts/run-local.sh [demo flags, e.g. -policy all -lease-ttl 1s]
#   bash scripts/run-local.sh stop
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if command -v go >/dev/null 2>&1; then
	PATH="$PATH:$(go env GOPATH | cut -d: -f1)/bin"
fi
export PATH="$PATH:/usr/sbin:/sbin"
dir=.run/group
began=$SECONDS

# step LABEL CMD...: runs CMD with its output in a log; on a terminal a
# spinner shows the elapsed time meanwhile. On failure the log is shown.
step() {
	local label=$1 log rc=0 start=$SECONDS
	shift
	log=$(mktemp)
	if [ -t 1 ]; then
		"$@" >"$log" 2>&1 &
		local pid=$! i=0 frames='|/-\'
		while kill -0 "$pid" 2>/dev/null; do
			printf '\r\033[K  %s %s … %ds' "${frames:i++%4:1}" "$label" $((SECONDS - start))
			sleep 0.2
		done
		wait "$pid" || rc=$?
		printf '\r\033[K'
	else
		"$@" >"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		echo "  ✗ $label failed:"
		sed 's/^/    /' "$log"
		rm -f "$log"
		exit "$rc"
	fi
	rm -f "$log"
	echo "  ✓ $label ($((SECONDS - start))s)"
}

build_demo() {
	go build -o bin/replicar-demo ./examples/demo
}

if [ "${1:-}" = stop ]; then
	if [ ! -d "$dir" ]; then
		echo "nothing to stop: no $dir"
		exit 0
	fi
	[ -x bin/replicar-demo ] || build_demo
	exec bin/replicar-demo stop -dir "$dir"
fi

echo "replicar: install, build, run"
# apt-get and go install print their own progress, which is the progress
# display of this, the longest step on a fresh machine.
bash scripts/install-deps.sh
step "build bin/replicar (the first build downloads the Go modules)" "${MAKE:-make}" --no-print-directory build
step "build bin/replicar-demo" build_demo
echo "  setup took $((SECONDS - began))s"
echo
exec bin/replicar-demo -dir "$dir" -bin bin/replicar "$@"
