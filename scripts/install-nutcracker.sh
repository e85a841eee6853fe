#!/usr/bin/env bash
# Installs nutcracker (twemproxy) from Debian's packages when it is missing:
# the benchmarks run it as the reference proxy next to replicar. Prints its
# path.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v nutcracker >/dev/null; then
	echo "install-nutcracker: apt-get install nutcracker (twemproxy, the benchmarks' reference proxy)" >&2
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y nutcracker >/dev/null
fi
command -v nutcracker
