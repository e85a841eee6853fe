#!/usr/bin/env bash
# Throughput of the RESP front end next to the store it fronts, in one run:
# redis-benchmark -t set,get at -c 50 with -P 1 and -P 16, once directly
# against redis-server and once through replicar, then the ratios.
#
#   bash bench/resp.sh            # defaults: 200k requests per test
#   REQUESTS=1000000 bash bench/resp.sh
#   ACK_POLICY=leader bash bench/resp.sh
#   FSYNC=everysec bash bench/resp.sh   # the backlog's WAL on (DATA_DIR), with that fsync policy
#
# Everything runs on loopback ports picked free at start, in a temp dir that
# is removed at exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
requests="${REQUESTS:-200000}"
clients="${CLIENTS:-50}"
policy="${ACK_POLICY:-quorum}"
fsync="${FSYNC:-}"
export PATH="$PATH:/usr/sbin:/sbin"

for bin in redis-server redis-benchmark redis-cli; do
	command -v "$bin" >/dev/null || { echo "bench: $bin missing; run: bash scripts/install-deps.sh" >&2; exit 1; }
done
make -s build

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
	--dir "$work" --daemonize no --protected-mode no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

proxy_port=$(free_port)
wal=()
if [ -n "$fsync" ]; then
	wal=(REPLICAR_DATA_DIR="$work/data" REPLICAR_FSYNC="$fsync")
fi
env "${wal[@]}" REPLICAR_BACKEND="127.0.0.1:$redis_port" REPLICAR_LISTEN="127.0.0.1:$proxy_port" \
	REPLICAR_REPL_LISTEN="127.0.0.1:$(free_port)" REPLICAR_HTTP_LISTEN="127.0.0.1:$(free_port)" \
	REPLICAR_NATS_LISTEN="127.0.0.1:$(free_port)" REPLICAR_ACK_POLICY="$policy" \
	REPLICAR_LOG_LEVEL=warn ./bin/replicar >"$work/replicar.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$proxy_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$proxy_port" ping >/dev/null || { echo "bench: replicar did not start:" >&2; cat "$work/replicar.log" >&2; exit 1; }
# A lone node elects itself, then waits out one lease TTL before it serves.
for _ in $(seq 300); do [ "$(redis-cli -p "$proxy_port" set bench:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
[ "$(redis-cli -p "$proxy_port" del bench:ready 2>/dev/null)" = 1 ] || { echo "bench: replicar never took writes:" >&2; cat "$work/replicar.log" >&2; exit 1; }

# rps PORT PIPELINE TEST → requests per second
rps() {
	redis-benchmark -h 127.0.0.1 -p "$1" -c "$clients" -n "$requests" -P "$2" -t "$3" -r 100000 --csv 2>/dev/null |
		awk -F'"' 'NR==2 {print $4}'
}

printf '%-6s %-4s %14s %14s %7s\n' test P direct replicar ratio
for p in 1 16; do
	for t in set get; do
		d=$(rps "$redis_port" "$p" "$t")
		r=$(rps "$proxy_port" "$p" "$t")
		ratio=$(awk -v a="$r" -v b="$d" 'BEGIN { printf "%.2f", a / b }')
		printf '%-6s %-4s %14s %14s %7s\n' "$t" "$p" "$d" "$r" "$ratio"
	done
done
echo "($requests requests, $clients clients, ack policy $policy, one backlog${fsync:+ with its WAL (fsync $fsync)}, no followers)"
redis-cli -p "$proxy_port" replicar info | grep -E '^(offset|writes_logged|committed):' || true
