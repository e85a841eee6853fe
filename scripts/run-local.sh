#!/usr/bin/env bash
# The main job on one machine: a redis-server and a replicar node in front of
# it, on free loopback ports, with state under .run/. It runs in the
# foreground until Ctrl-C; `make stop` (or `bash scripts/run-local.sh stop`)
# stops a copy left running in the background.
#
# Followers and failover arrive with the replication and election work
# (issues 4 and 5); until then the node is a single leader that logs every
# write, deterministically rewritten, to its backlog and WAL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/sbin:/sbin"
run=.run

stop() {
	for f in "$run"/*.pid; do
		[ -e "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
}
if [ "${1:-}" = stop ]; then
	stop
	echo "stopped"
	exit 0
fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop
mkdir -p "$run/redis" "$run/node1"
redis_port=$(free_port)
listen_port=$(free_port)
http_port=$(free_port)

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$PWD/$run/redis" --save "" \
	--appendonly yes --daemonize no --protected-mode no >"$run/redis.log" 2>&1 &
echo $! >"$run/redis.pid"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

export REPLICAR_PROTOCOL=redis
export REPLICAR_BACKEND="127.0.0.1:$redis_port"
export REPLICAR_LISTEN="127.0.0.1:$listen_port"
export REPLICAR_HTTP_LISTEN="127.0.0.1:$http_port"
export REPLICAR_REPL_LISTEN="127.0.0.1:$(free_port)"
export REPLICAR_NATS_LISTEN="127.0.0.1:$(free_port)"
export REPLICAR_NODE_ID=n1
export REPLICAR_DATA_DIR="$PWD/$run/node1"
export REPLICAR_LOG_FORMAT=console
./bin/replicar &
echo $! >"$run/node1.pid"
for _ in $(seq 100); do redis-cli -p "$listen_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

cat <<MSG

replicar is running:
  clients:   redis-cli -p $listen_port        (replicar, node n1, leader)
  backend:   redis-cli -p $redis_port        (the store it fronts)
  status:    redis-cli -p $listen_port replicar info
  stop:      Ctrl-C here, or: make stop
MSG
redis-cli -p "$listen_port" set demo:greeting "hello" ex 3600 >/dev/null
echo "  a write:   SET demo:greeting hello EX 3600 -> the backend holds: $(redis-cli -p "$redis_port" pexpiretime demo:greeting) (absolute PXAT)"
trap 'stop; exit 0' INT TERM
wait
