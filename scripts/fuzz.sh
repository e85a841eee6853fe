#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZTIME each (default 10s).
# `make test` runs it briefly; `make fuzz` longer. Go fuzzes one target per
# invocation, so the targets are found in the test files and run one by one.
#
# Go's fuzz coordinator sometimes ends a clean run with "context deadline
# exceeded" when a worker answers late as -fuzztime runs out (seen on this
# 2-core machine under load). That is not a finding: a real one writes a
# crasher under testdata/fuzz/<Target>/. Such a run is retried, at most twice;
# any other failure, or a new crasher, fails the script.
set -uo pipefail
fuzztime="${FUZZTIME:-10s}"
cd "$(dirname "$0")/.."
found=0
failed=0
crashers() { find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort; }
while IFS=: read -r file target; do
	dir="./$(dirname "$file")"
	found=$((found + 1))
	for attempt in 1 2 3; do
		echo "fuzz: $dir $target for $fuzztime (attempt $attempt)"
		before=$(crashers "$dir" "$target")
		out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir" 2>&1)
		rc=$?
		echo "$out"
		[ $rc -eq 0 ] && break
		after=$(crashers "$dir" "$target")
		if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' <<<"$out" &&
			! grep -q 'Failing input written' <<<"$out" && [ $attempt -lt 3 ]; then
			echo "fuzz: $target: coordinator timeout without a finding; retrying"
			continue
		fi
		echo "fuzz: $target FAILED" >&2
		failed=$((failed + 1))
		break
	done
done < <(git ls-files -co --exclude-standard '*_test.go' |
	xargs grep -oE '^func Fuzz[A-Za-z0-9_]+' |
	sed -E 's/func //' | sort)
if [ "$found" -eq 0 ]; then
	echo "fuzz: no Fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $((found - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
