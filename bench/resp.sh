#!/usr/bin/env bash
# Throughput of the RESP front end next to the store it fronts, in one run:
# redis-benchmark -t set,get at -c 50 with -P 1 and -P 16, directly against
# redis-server, through two reference proxies, and through replicar, with each
# one's ratio to direct. The references show what sitting in front of Redis
# costs on this host before any proxy logic:
#   relay      bench/relay, a byte copier that parses nothing (the floor);
#   twemproxy  nutcracker, the C proxy people put in front of Redis today.
# Each proxy's CPU per request is printed with its ratio, and the last column
# is the CPU per request any proxy could spend and still reach 0.8x direct
# with both cores busy all the time: the cores divided by 0.8x the direct
# rate, less what the benchmark and redis-server spend per request.
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
bash scripts/install-nutcracker.sh >/dev/null
make -s build
go build -o bin/relay ./bench/relay

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

relay_port=$(free_port)
./bin/relay "127.0.0.1:$relay_port" "127.0.0.1:$redis_port" 2>"$work/relay.log" &
pids+=($!)
twem_port=$(free_port)
cat >"$work/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$twem_port
  redis: true
  servers:
    - 127.0.0.1:$redis_port:1
EOF
# The stats port is picked too: Debian's nutcracker service may hold 22222.
nutcracker -c "$work/nutcracker.yml" -s "$(free_port)" -a 127.0.0.1 -o "$work/nutcracker.log" &
pids+=($!)

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

for port in $relay_port $twem_port; do
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis_pid=${pids[0]}
replicar_pid=${pids[-1]}

# cpu PID → clock ticks the process has used (user + system)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# rps PORT PIPELINE TEST → requests per second; the benchmark's own CPU
# seconds (user + system) go to $work/bench.cpu.
rps() {
	/usr/bin/time -f '%U %S' -o "$work/bench.cpu" \
		redis-benchmark -h 127.0.0.1 -p "$1" -c "$clients" -n "$requests" -P "$2" -t "$3" -r 100000 --csv 2>/dev/null |
		awk -F'"' 'NR==2 {print $4}'
}

hz=$(getconf CLK_TCK)
relay_pid=${pids[1]}
twem_pid=${pids[2]}

# through PORT PID PIPELINE TEST → "req/s ratio proxy-µs/op redis-µs/op
# benchmark-µs/op" for one run through the proxy PID listening on PORT.
through() {
	local r0 p0 r1 p1 rate
	r0=$(cpu "$redis_pid") p0=$(cpu "$2")
	rate=$(rps "$1" "$3" "$4")
	r1=$(cpu "$redis_pid") p1=$(cpu "$2")
	awk -v rate="$rate" -v d="$direct" -v req="$requests" -v hz="$hz" -v rc="$((r1 - r0))" -v pc="$((p1 - p0))" '{
		us = 1e6 / req
		printf "%.0f %.2f %.2f %.2f %.2f\n", rate, rate / d, pc / hz * us, rc / hz * us, ($1 + $2) * us
	}' "$work/bench.cpu"
}

echo "requests/s, then (ratio to direct, the proxy's CPU µs per request)"
printf '%-4s %-3s %9s %24s %24s %24s  %s\n' test P direct relay twemproxy replicar 'budget for 0.8x'
for p in 1 16; do
	for t in set get; do
		direct=$(rps "$redis_port" "$p" "$t")
		read -r l lr lc _ <<<"$(through "$relay_port" "$relay_pid" "$p" "$t")"
		read -r n nr nc _ <<<"$(through "$twem_port" "$twem_pid" "$p" "$t")"
		read -r r rr rc redis_us bench_us <<<"$(through "$proxy_port" "$replicar_pid" "$p" "$t")"
		# What a proxy may spend per request for 0.8x direct if the two
		# cores were busy all the time, after the benchmark's and Redis's
		# own CPU per request (as measured in the replicar run).
		budget=$(awk -v d="$direct" -v b="$bench_us" -v s="$redis_us" -v c="$(nproc)" 'BEGIN { printf "%.2f", c * 1e6 / (0.8 * d) - b - s }')
		printf '%-4s %-3s %9.0f %9.0f (%.2f, %5.2f) %9.0f (%.2f, %5.2f) %9.0f (%.2f, %5.2f)  %s\n' \
			"$t" "$p" "$direct" "$l" "$lr" "$lc" "$n" "$nr" "$nc" "$r" "$rr" "$rc" "$budget"
	done
done
echo "($requests requests, $clients clients, ack policy $policy, one backlog${fsync:+ with its WAL (fsync $fsync)}, no followers)"
redis-cli -p "$proxy_port" replicar info | grep -E '^(offset|writes_logged|committed):' || true
