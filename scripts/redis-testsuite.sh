#!/usr/bin/env bash
# Redis's own Tcl test suite in external mode (`runtest --host --port`), run
# twice: first directly against redis-server (the baseline: some tests fail
# in external mode even without a proxy), then through replicar in front of
# another redis-server. It reports both counts and the tests that pass
# directly but not through the proxy, and exits non-zero when one of those
# is not in scripts/redis-testsuite.allow. See docs/REDIS-TESTSUITE.md.
#
#   make redis-testsuite
#   UNITS="unit/type/string unit/multi" bash scripts/redis-testsuite.sh
#   SKIP_DIRECT=1 bash scripts/redis-testsuite.sh   # reuse the last baseline
#   REPORT_ONLY=1 bash scripts/redis-testsuite.sh   # compare the last logs
#
# The suite is the one of the installed redis-server's version, downloaded
# from Debian's pool into .cache/redis-src (sha256 checked against the pinned
# value and the .dsc), never committed. Each pass runs the units one by one
# against one redis-server (and one replicar), as Redis's own external CI job
# does, and starts them anew after a unit with a failure. Everything listens
# on loopback ports picked free at start; the servers and their temp dirs go
# at exit. Logs stay in .cache/redis-testsuite.
#
# Environment:
#   UNITS          units to run (default: every unit of the suite; a unit
#                  whose tests are all tagged external:skip ends at once)
#   TAGS           runtest tag filter (default "-slow -needs:repl -resp3": as
#                  Redis's own external CI job, without SYNC and RESP3, which
#                  the proxy does not offer; both passes use the same filter)
#   UNIT_TIMEOUT   seconds a unit may run in all (default 900)
#   STALL_TIMEOUT  seconds without a test finishing before runtest gives up
#                  on a unit (default 120)
#   SKIP_DIRECT=1  do not run the baseline; reuse the one in the log dir
#   REPORT_ONLY=1  run nothing; compare the logs of the last run
#   REDIS_SRC_CACHE, REDIS_TESTSUITE_LOGS  where the sources and logs go
#
# The whole script is one function called on its last line, so that editing
# it during a run (bash reads scripts as it goes) cannot break that run.
set -euo pipefail

main() {
	cd "$(dirname "${BASH_SOURCE[0]}")/.."
	root=$(pwd)
	export PATH="$PATH:/usr/sbin:/sbin"
	export TERM=dumb # runtest colours its output only on xterm

	redis_version="${REDIS_VERSION:-7.0.15}"
	debian_version="${REDIS_DEBIAN_VERSION:-7.0.15-1~deb12u10}"
	mirror="${REDIS_SRC_MIRROR:-http://deb.debian.org/debian-security/pool/updates/main/r/redis}"
	cache="${REDIS_SRC_CACHE:-$root/.cache/redis-src}"
	logs="${REDIS_TESTSUITE_LOGS:-$root/.cache/redis-testsuite}"
	allow="$root/scripts/redis-testsuite.allow"
	tags="${TAGS:--slow -needs:repl -resp3}"
	unit_timeout="${UNIT_TIMEOUT:-900}"
	stall_timeout="${STALL_TIMEOUT:-120}"

	local bin
	for bin in redis-server redis-cli go python3 sha256sum timeout tar; do
		command -v "$bin" >/dev/null || die "$bin missing; run: bash scripts/install-deps.sh"
	done
	command -v tclsh8.6 >/dev/null || command -v tclsh8.5 >/dev/null || command -v tclsh8.7 >/dev/null ||
		die "tclsh 8.5 or newer missing (apt-get install tcl)"
	local have
	have=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')
	[ "$have" = "$redis_version" ] ||
		die "redis-server is $have but the suite is $redis_version's; set REDIS_VERSION and REDIS_DEBIAN_VERSION to match"

	fetch_sources

	if [ -n "${UNITS:-}" ]; then
		read -r -a units <<<"$UNITS"
	else
		mapfile -t units < <(cd "$src" && ./runtest --list-tests)
	fi
	if [ "${REPORT_ONLY:-}" = 1 ]; then
		report
		return
	fi

	go build -o bin/replicar ./cmd/replicar
	work=$(mktemp -d)
	pids=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	mkdir -p "$logs/direct" "$logs/proxy"
	local started direct_done finished unit t0 log dlog
	started=$(date +%s)
	if [ "${SKIP_DIRECT:-}" != 1 ]; then
		rm -f "$logs"/direct/*.log
		for unit in "${units[@]}"; do
			t0=$(date +%s)
			log="$logs/direct/${unit//\//_}.log"
			run_unit direct "$unit" "$log"
			if ran_tests "$log"; then say "direct $unit ($(($(date +%s) - t0))s)"; fi
		done
		stop_all
	fi
	direct_done=$(date +%s)
	rm -f "$logs"/proxy/*.log
	for unit in "${units[@]}"; do
		dlog="$logs/direct/${unit//\//_}.log"
		# A unit whose tests are all skipped in external mode is skipped
		# through the proxy too (tags do not depend on the server).
		if [ -f "$dlog" ] && ! ran_tests "$dlog"; then
			continue
		fi
		t0=$(date +%s)
		run_unit proxy "$unit" "$logs/proxy/${unit//\//_}.log"
		say "proxy  $unit ($(($(date +%s) - t0))s)"
	done
	stop_all
	finished=$(date +%s)
	say "direct pass $((direct_done - started))s, proxy pass $((finished - direct_done))s; logs in $logs"
	report
}

say() { echo "redis-testsuite: $*" >&2; }
die() {
	say "$*"
	exit 2
}

# --- sources -----------------------------------------------------------------

fetch() { # URL FILE
	if command -v curl >/dev/null; then
		curl -fsSL --retry 3 -o "$2.part" "$1"
	else
		wget -q -O "$2.part" "$1"
	fi
	mv "$2.part" "$2"
}

# The orig tarball of 7.0.15 as Debian ships it; its .dsc must agree.
pinned_sha256_7_0_15=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982

# fetch_sources downloads, checks and unpacks the suite once → sets src.
fetch_sources() {
	src="$cache/redis-$redis_version"
	if [ ! -f "$src/.unpacked" ]; then
		mkdir -p "$cache"
		local tarball="redis_$redis_version.orig.tar.gz" dsc="redis_$debian_version.dsc" want got
		[ -s "$cache/$dsc" ] || {
			say "downloading $mirror/$dsc"
			fetch "$mirror/$dsc" "$cache/$dsc"
		}
		[ -s "$cache/$tarball" ] || {
			say "downloading $mirror/$tarball"
			fetch "$mirror/$tarball" "$cache/$tarball"
		}
		want=$(awk -v f="$tarball" '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && $3 == f {print $1}' "$cache/$dsc")
		[ -n "$want" ] || die "$dsc lists no sha256 for $tarball"
		if [ "$redis_version" = 7.0.15 ] && [ "$want" != "$pinned_sha256_7_0_15" ]; then
			die "$dsc gives sha256 $want for $tarball, not the pinned $pinned_sha256_7_0_15"
		fi
		got=$(sha256sum "$cache/$tarball" | awk '{print $1}')
		if [ "$got" != "$want" ]; then
			rm -f "$cache/$tarball"
			die "$tarball: sha256 $got, want $want (removed; run again to download it anew)"
		fi
		rm -rf "$src"
		tar -xzf "$cache/$tarball" -C "$cache"
		[ -x "$src/runtest" ] || die "$tarball did not unpack to $src"
		touch "$src/.unpacked"
		say "redis $redis_version sources in $src (sha256 ok)"
	fi
	# Some units run the tools from src/; use the installed ones.
	local b p
	for b in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
		if p=$(command -v "$b"); then ln -sf "$p" "$src/src/$b"; fi
	done
}

# --- processes ---------------------------------------------------------------

# stop_all stops the newest process first: replicar before the redis-server
# behind it. A lone leader's SIGTERM handover waits for a follower that does
# not exist (seconds), so after a short grace it is killed: its state is
# thrown away anyway.
stop_all() {
	local i p _
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		kill "$p" 2>/dev/null || true
		for _ in $(seq 20); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
	servers_up=0
}

cleanup() {
	stop_all
	rm -rf "$work"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_redis LOG → sets redis_port
start_redis() {
	local dir _
	dir=$(mktemp -d "$work/redis.XXXXXX")
	redis_port=$(free_port)
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
		--enable-debug-command yes --enable-protected-configs yes \
		--dir "$dir" --daemonize no --protected-mode no >"$1" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	cat "$1" >&2
	die "redis-server did not start"
}

# start_replicar BACKEND_PORT LOG → sets proxy_port
start_replicar() {
	local dir _
	dir=$(mktemp -d "$work/replicar.XXXXXX")
	proxy_port=$(free_port)
	REPLICAR_PROTOCOL=redis REPLICAR_LISTEN="127.0.0.1:$proxy_port" \
		REPLICAR_BACKEND="127.0.0.1:$1" REPLICAR_REPL_LISTEN="127.0.0.1:$(free_port)" \
		REPLICAR_HTTP_LISTEN="127.0.0.1:$(free_port)" REPLICAR_NATS_LISTEN="127.0.0.1:$(free_port)" \
		REPLICAR_ACK_POLICY=leader REPLICAR_DATA_DIR="$dir" REPLICAR_LOG_LEVEL=info \
		"$root/bin/replicar" >"$2" 2>&1 &
	pids+=($!)
	# Ready once it leads: a write goes through (the next unit's FLUSHALL
	# removes the probe key).
	for _ in $(seq 300); do
		[ "$(redis-cli -p "$proxy_port" -n 9 set __redis_testsuite_probe 1 2>/dev/null)" = OK ] && return 0
		sleep 0.05
	done
	cat "$2" >&2
	die "replicar did not start"
}

# ensure_servers MODE → sets port: the servers of a pass are shared by its
# units and started anew when a unit left them unusable (stop_all) or a
# process died or the backend no longer answers (a script busy forever).
starts=0
servers_up=0
ensure_servers() {
	if [ "$servers_up" = 1 ]; then
		local p ok=1
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || ok=0; done
		[ "$(timeout 5 redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || ok=0
		[ $ok = 1 ] && return 0
		say "servers unusable after the last unit: starting fresh ones"
		stop_all
	fi
	starts=$((starts + 1))
	start_redis "$logs/$1/redis.$starts.log"
	port=$redis_port
	if [ "$1" = proxy ]; then
		start_replicar "$redis_port" "$logs/$1/replicar.$starts.log"
		port=$proxy_port
	fi
	servers_up=1
}

# skip_args UNIT: --skiptest for the allowlist's entries whose reason starts
# with "skip:": through the proxy they hang, or leave the server unusable
# (a script busy forever), so the rest of the unit would not run.
skip_args() {
	python3 - "$allow" "$1" <<'PY'
import fnmatch, re, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith('#'):
        continue
    parts = [p.strip() for p in line.split(' | ')]
    if len(parts) == 3 and parts[2].startswith('skip:') and fnmatch.fnmatchcase(sys.argv[2], parts[0]):
        rx = ''.join('.*' if c == '*' else '.' if c == '?' else re.escape(c) for c in parts[1])
        print('--skiptest')
        print('/^' + rx + '$')
PY
}

# run_unit MODE UNIT LOG
run_unit() {
	local mode=$1 unit=$2 log=$3 rc=0 extra=()
	ensure_servers "$mode"
	if [ "$mode" = proxy ]; then mapfile -t extra < <(skip_args "$unit"); fi
	(cd "$src" && timeout -k 10 "$unit_timeout" ./runtest --host 127.0.0.1 --port "$port" \
		--tags "$tags" --durable --clients 1 --timeout "$stall_timeout" \
		--single "$unit" "${extra[@]}") >"$log" 2>&1 || rc=$?
	if [ $rc -eq 124 ]; then echo "[TIMEOUT]: unit killed after ${unit_timeout}s" >>"$log"; fi
	# A failed test may leave state behind (a parked blocked client, a
	# config it did not restore, a busy script): the next unit gets fresh
	# servers, so one unit's failure does not turn into another's.
	if grep -qE '^\[(err|exception|TIMEOUT)\]' "$log"; then stop_all; fi
	return 0
}

# ran_tests LOG: whether runtest ran (or tried) any test of the unit.
ran_tests() { grep -qE '^\[(ok|err|exception|TIMEOUT)\]' "$1"; }

# --- report ------------------------------------------------------------------

# report compares the two passes' logs and fails when a test passes
# directly but not through the proxy, unless the allowlist names it.
report() {
	python3 - "$logs" "$allow" "${units[@]}" <<'PY'
import fnmatch, os, re, sys

logs, allow_path, units = sys.argv[1], sys.argv[2], sys.argv[3:]
ok_re = re.compile(r'^\[ok\]: (.*) \(\d+ ms\)$')
err_re = re.compile(r'^\[err\]: (.*) in tests/(\S+)\.tcl$')

def parse(mode):
    """unit → {test: 'ok'|'err'}, the first line of each failure's message
    by (unit, test), and the failures outside any test.

    A name that runs more than once in a unit (the scripting unit runs
    every test for EVAL and for FUNCTION) fails if any run fails."""
    res, msgs, stray = {}, {}, []
    for unit in units:
        path = os.path.join(logs, mode, unit.replace('/', '_') + '.log')
        if not os.path.exists(path):
            continue
        tests = res.setdefault(unit, {})
        lines = [l.rstrip('\n') for l in open(path, errors='replace')]
        for i, line in enumerate(lines):
            m = ok_re.match(line)
            if m:
                tests.setdefault(m.group(1), 'ok')
                continue
            m = err_re.match(line)
            if m:
                tests[m.group(1)] = 'err'
                # An exception's message comes twice, first cut short.
                msg = lines[i + 1:i + 3] + ['', '']
                msgs.setdefault((unit, m.group(1)), msg[1] if msg[1] and msg[1].endswith(msg[0][-20:]) and len(msg[1]) > len(msg[0]) else msg[0])
                continue
            if line.startswith(('[err]: ', '[exception]: ', '[TIMEOUT]: ')):
                stray.append(unit + ': ' + line)
    return res, msgs, stray

def counts(res):
    p = sum(1 for t in res.values() for s in t.values() if s == 'ok')
    f = sum(1 for t in res.values() for s in t.values() if s == 'err')
    return p, f

allow = []
for n, line in enumerate(open(allow_path), 1):
    line = line.strip()
    if not line or line.startswith('#'):
        continue
    parts = [p.strip() for p in line.split(' | ')]
    if len(parts) != 3 or not all(parts):
        sys.exit(f'{allow_path}:{n}: want "unit | test name (glob) | reason"')
    allow.append(parts + [n])

used = set()
def allowed(unit, test, msg):
    for u, pat, reason, n in allow:
        if not fnmatch.fnmatchcase(unit, u):
            continue
        if pat.startswith('msg:'):
            ok = msg is not None and fnmatch.fnmatchcase(msg, pat[4:])
        else:
            ok = fnmatch.fnmatchcase(test, pat)
        if ok:
            used.add(n)
            return reason
    return None

direct, _, dstray = parse('direct')
proxy, pmsgs, pstray = parse('proxy')
dp, df = counts(direct)
pp, pf = counts(proxy)
print()
print(f'units: {len(units)}, of which {sum(1 for u in units if direct.get(u))} run tests in external mode')
print(f'direct:        {dp} passed, {df} failed' + (f', {len(dstray)} errors outside a test' if dstray else ''))
print(f'through proxy: {pp} passed, {pf} failed' + (f', {len(pstray)} errors outside a test' if pstray else ''))

only = []
for unit in units:
    for test, st in direct.get(unit, {}).items():
        if st != 'ok':
            continue
        got = proxy.get(unit, {}).get(test)
        if got == 'ok':
            continue
        why = 'failed' if got == 'err' else 'not run'
        only.append((unit, test, why, allowed(unit, test, pmsgs.get((unit, test)))))
allowed_n = sum(1 for o in only if o[3])
print(f'passing directly but not through the proxy: {len(only)} ({allowed_n} in the allowlist, {len(only) - allowed_n} not)')
for unit, test, why, reason in only:
    if not reason:
        print(f'  NOT ALLOWED  {unit}: {test} [{why}]')
        if (unit, test) in pmsgs:
            print(f'               {pmsgs[(unit, test)][:160]}')
for unit, test, why, reason in only:
    if reason:
        print(f'  allowed      {unit}: {test} [{why}] ({reason})')
if pstray:
    print('errors outside a test through the proxy:')
    for s in pstray:
        print('  ' + s[:200])
fixed = [(u, t) for u in units for t, st in proxy.get(u, {}).items()
         if st == 'ok' and direct.get(u, {}).get(t) == 'err']
if fixed:
    print('failing directly but passing through the proxy:')
    for u, t in fixed:
        print(f'  {u}: {t}')
# Only a run of every unit can tell that an entry is no longer needed.
stale = [a for a in allow if a[3] not in used and not a[2].startswith('race:')] if os.environ.get('UNITS', '') == '' else []
if stale:
    print('allowlist entries that matched nothing in this run (fixed? renamed?):')
    for u, pat, reason, n in stale:
        print(f'  line {n}: {u} | {pat}')
sys.exit(1 if len(only) > allowed_n else 0)
PY
}

main "$@"; exit $?
