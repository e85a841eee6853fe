#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZTIME each (default 10s).
# `make test` runs it briefly; `make fuzz` longer. Go fuzzes one target per
# invocation, so the targets are found in the test files and run one by one.
set -euo pipefail
fuzztime="${FUZZTIME:-10s}"
cd "$(dirname "$0")/.."
found=0
while IFS=: read -r file target; do
	dir="./$(dirname "$file")"
	found=$((found + 1))
	echo "fuzz: $dir $target for $fuzztime"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir"
done < <(git ls-files -co --exclude-standard '*_test.go' |
	xargs grep -oE '^func Fuzz[A-Za-z0-9_]+' |
	sed -E 's/func //' | sort)
if [ "$found" -eq 0 ]; then
	echo "fuzz: no Fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $found passed, 0 failed"
