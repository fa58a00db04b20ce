#!/usr/bin/env bash
# bench/load.sh: livegate under load with bench/lgload: many HLS viewers per
# stream, several streams, and the most concurrent real-time streams.
#
#   bench/load.sh            full run (DURATION=30s per scenario)
#   bench/load.sh --smoke    one 8 s scenario (1 stream x 5 viewers)
#
# It builds the gateway and lgload into OUT_DIR (a new temporary directory
# unless set), and for each scenario starts a fresh gateway on a free
# 127.0.0.1 port (so its idle memory is the baseline), runs lgload with
# -gateway-pid (gateway and transcoder CPU and RSS from /proc), saves the
# JSON report as OUT_DIR/NAME.json and stops the gateway.
# Scenarios: 1 stream x 50 LL viewers; 1 x 50 segment viewers; 2 x 20 LL;
# then 1, 2, 3... streams with 2 viewers each until one stream's median
# publisher speed drops below 0.95 (MAX_STREAMS, default 4).
# Environment: DURATION, OUT_DIR, MAX_STREAMS.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
[ "${1:-}" = --smoke ] && smoke=1
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { sed -n '2,17p' "$0"; exit 0; }
for tool in go ffmpeg python3; do
	command -v "$tool" >/dev/null || { echo "load.sh: $tool not found" >&2; exit 1; }
done
duration=${DURATION:-30s}
[ $smoke = 1 ] && duration=${DURATION:-8s}
out=${OUT_DIR:-$(mktemp -d -t lgload-XXXXXX)}
mkdir -p "$out"
go build -o "$out/livegate" ./cmd/livegate
go build -o "$out/lgload" ./bench/lgload
# the streams scenarios go past the cores (max_streams' default)
echo '{"max_streams": 100}' >"$out/gateway.json"

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
free -h | sed -n 1,2p

gw_pid=
stop_gateway() {
	if [ -n "$gw_pid" ]; then
		kill -INT "$gw_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$gw_pid" 2>/dev/null || true
		wait "$gw_pid" 2>/dev/null || true
		gw_pid=
	fi
}
trap stop_gateway EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# steal prints the CPU steal percentage since the /proc/stat line in $1.
steal() {
	python3 - "$1" "$(head -1 /proc/stat)" <<'PY'
import sys
a = [int(x) for x in sys.argv[1].split()[1:]]
b = [int(x) for x in sys.argv[2].split()[1:]]
d = [y - x for x, y in zip(a, b)]
print(f"{100 * d[7] / max(sum(d), 1):.0f}")
PY
}

# scenario NAME ARGS...: one lgload run against a fresh gateway.
scenario() {
	local name=$1
	shift
	local port
	port=$(free_port)
	"$out/livegate" --listen "127.0.0.1:$port" --config "$out/gateway.json" >"$out/$name.gateway.log" 2>&1 &
	gw_pid=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	local stat0
	stat0=$(head -1 /proc/stat)
	echo "== $name: $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	"$out/lgload" -url "http://127.0.0.1:$port" -gateway-pid "$gw_pid" -duration "$duration" \
		-json "$out/$name.json" "$@" 2>"$out/$name.progress" | tee "$out/$name.txt"
	echo "steal during $name: $(steal "$stat0") %"
	stop_gateway
}

if [ $smoke = 1 ]; then
	scenario smoke -publishers 1 -viewers 5
	echo "reports in $out"
	exit 0
fi

scenario s1v50-ll -publishers 1 -viewers 50 -mode ll
scenario s1v50-seg -publishers 1 -viewers 50 -mode segments
scenario s2v20-ll -publishers 2 -viewers 20 -mode ll
for n in $(seq 1 "${MAX_STREAMS:-4}"); do
	scenario "streams$n" -publishers "$n" -viewers 2 -mode ll
	speed=$(python3 -c 'import json,sys; print(min(s["publisher_speed_median"] for s in json.load(open(sys.argv[1]))["streams"]))' "$out/streams$n.json")
	if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 0.95 else 1)' "$speed"; then
		echo "== $n streams: lowest median publisher speed $speed < 0.95: the machine sustains $((n - 1)) real-time streams"
		break
	fi
done
echo "reports in $out"
