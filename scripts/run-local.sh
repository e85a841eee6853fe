#!/usr/bin/env bash
# The main job on one machine: a replicated group of three redis-servers, a
# replicar leader in front of the first and two followers applying to the
# others, on free loopback ports with state under .run/. It drives a short
# live workload, prints what each node holds, and stays up in the foreground
# until Ctrl-C; `make stop` (or `bash scripts/run-local.sh stop`) stops a copy
# running elsewhere.
#
# Until the NATS election lands the leader is fixed at start, and the nodes
# run inside one process (examples/localgroup).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/sbin:/sbin"
run=.run

if [ "${1:-}" = stop ]; then
	if [ -f "$run/localgroup.pid" ]; then
		kill "$(cat "$run/localgroup.pid")" 2>/dev/null || true
		for _ in $(seq 50); do [ -f "$run/localgroup.pid" ] || break; sleep 0.1; done
	fi
	echo "stopped"
	exit 0
fi

mkdir -p bin "$run"
go build -o bin/localgroup ./examples/localgroup
rm -rf "$run"/redis*
exec ./bin/localgroup -dir "$run" "$@"
