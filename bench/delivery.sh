#!/usr/bin/env bash
# bench/delivery.sh: requests/s, latency and server CPU per request of many
# concurrent viewers of ONE stream: livegate serving its segments from memory
# vs nginx (Debian) serving the same files from disk.
#
#   bench/delivery.sh            CONCURRENCY=100 clients, 15 s per pass
#   bench/delivery.sh --smoke    20 clients, 3 s per pass
#   bench/delivery.sh --live     livegate only, the live window while a publisher runs
#
# Method: a gateway on a free 127.0.0.1 port (keep_ended 10m,
# hls_segment_count 20) gets one lgload publisher for about 30 s; when it ends,
# the gateway freezes the last window (#EXT-X-ENDLIST) and keeps serving it
# from memory, with no transcoder running. The 720p media playlist, its init
# segment and its segments are fetched over HTTP into an nginx root (same
# relative paths). nginx runs from a minimal config in a temporary directory
# (2 workers like the gateway's 2 cores, sendfile on, access log off,
# keep-alive without a request limit). The same client, lgload -bench-get,
# fetches the same file list, round-robin, with the same concurrency and
# keep-alive, alternately: livegate, nginx, livegate, ... (PASSES=2).
# --live: the publisher keeps running; before each pass the init segment and
# the 5 newest segments of the live 720p playlist (which stay in the 20-segment
# window for 15 s) are fetched by the same client from livegate alone: nginx
# has no live window of its own, and the transcoder shares the machine.
# Environment: CONCURRENCY, DURATION (per pass), PASSES, OUT_DIR, GATEWAY
# (a prebuilt gateway binary instead of building ./cmd/livegate).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0 live=0
[ "${1:-}" = --smoke ] && smoke=1
[ "${1:-}" = --live ] && live=1
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { sed -n '2,27p' "$0"; exit 0; }
for tool in go ffmpeg python3 curl nginx; do
	command -v "$tool" >/dev/null || { echo "delivery.sh: $tool not found" >&2; exit 1; }
done
conc=${CONCURRENCY:-100}
dur=${DURATION:-15s}
passes=${PASSES:-2}
pubdur=20s
if [ $smoke = 1 ]; then conc=${CONCURRENCY:-20}; dur=${DURATION:-3s}; passes=1; pubdur=6s; fi
out=${OUT_DIR:-$(mktemp -d -t lgdelivery-XXXXXX)}
mkdir -p "$out"
if [ -n "${GATEWAY:-}" ]; then cp "$GATEWAY" "$out/livegate"; else go build -o "$out/livegate" ./cmd/livegate; fi
go build -o "$out/lgload" ./bench/lgload

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gw_pid= ng_pid= pub_pid=
cleanup() {
	for p in $pub_pid $gw_pid $ng_pid; do kill -INT "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in $pub_pid $gw_pid $ng_pid; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
gport=$(free_port)
echo '{"keep_ended": "10m", "hls_segment_count": 20}' >"$out/gateway.json"
"$out/livegate" --listen "127.0.0.1:$gport" --config "$out/gateway.json" >"$out/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# cpu PID... prints the CPU seconds of the pids and (unless children=0)
# their children.
children=1
cpu() {
	local t=0 p
	for p in "$@" $([ $children = 1 ] && pgrep -P "$(echo "$@" | tr ' ' ',')" || true); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

run() { # run NAME PIDS
	local name=$1 c0 c1
	shift
	c0=$(cpu "$@")
	"$out/lgload" -bench-get "$out/$name.urls" -concurrency "$conc" -duration "$dur" -json "$out/$name.$pass.json" | sed "s/^/$name: /"
	c1=$(cpu "$@")
	echo "$name: server CPU $(python3 -c '
import json, sys
cores = (int(sys.argv[2]) - int(sys.argv[1])) / 100 / float(sys.argv[3][:-1])
rps = json.load(open(sys.argv[4]))["requests_per_s"]
us = cores / rps * 1e6 if rps else 0
print(f"{cores:.2f} cores, {us:.0f} µs per request", end="")' "$c0" "$c1" "$dur" "$out/$name.$pass.json") ($([ $children = 1 ] && echo incl. children || echo without the transcoder))"
}

if [ $live = 1 ]; then
	children=0 # the gateway's child is the transcoder
	secs=${dur%s}
	"$out/lgload" -url "http://127.0.0.1:$gport" -prefix deliv -publishers 1 -viewers 0 \
		-duration "$((passes * (secs + 15) + 120))s" >"$out/publish.txt" 2>"$out/publish.progress" &
	pub_pid=$!
	base="http://127.0.0.1:$gport/live/deliv0"
	for pass in $(seq "$passes"); do
		for _ in $(seq 240); do # until the window holds 6 segments (a loaded machine transcodes slowly)
			curl -sf "$base/720p/video1_stream.m3u8" >"$out/media.m3u8" 2>/dev/null &&
				[ "$(grep -c '^[^#].*seg' "$out/media.m3u8")" -ge 6 ] && break
			sleep 0.5
		done
		(grep -o '#EXT-X-MAP:URI="[^"]*"' "$out/media.m3u8" | sed 's/.*URI="//; s/"$//'; grep '^[^#].*seg' "$out/media.m3u8" | tail -5) |
			sed "s|^|$base/720p/|" >"$out/livegate.urls"
		echo "live window: $(wc -l <"$out/livegate.urls") files, $(cat "$out/livegate.urls" | xargs curl -sf | wc -c) bytes"
		run livegate "$gw_pid"
	done
	echo "publisher + transcoder (ffmpeg, a child of the gateway) shared the machine; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "reports in $out"
	exit 0
fi

# One publisher, no viewers; when lgload returns the stream has ended.
"$out/lgload" -url "http://127.0.0.1:$gport" -prefix deliv -publishers 1 -viewers 0 \
	-duration "$pubdur" >"$out/publish.txt" 2>"$out/publish.progress"
base="http://127.0.0.1:$gport/live/deliv0"
media=$(curl -sf "$base/index.m3u8" | grep -v '^#' | head -1 || true)
media=${media:-720p/video1_stream.m3u8}
dir=$(dirname "$media")
# The stream ends once the transcoder has caught up with what was sent.
for _ in $(seq 120); do
	curl -sf "$base/$media" >"$out/media.m3u8" || true
	grep -q EXT-X-ENDLIST "$out/media.m3u8" && break
	sleep 0.5
done
grep -q EXT-X-ENDLIST "$out/media.m3u8" || { echo "delivery.sh: playlist not ended after 60 s" >&2; exit 1; }
files=$( (grep -o 'URI="[^"]*"' "$out/media.m3u8" | sed 's/URI="//; s/"$//'; grep -v '^#' "$out/media.m3u8") | grep -v gap | sort -u)
root="$out/www"
mkdir -p "$root/live/deliv0/$dir"
: >"$out/livegate.urls"
: >"$out/nginx.urls"
nport=$(free_port)
for f in $files; do
	curl -sf "$base/$dir/$f" -o "$root/live/deliv0/$dir/$f"
	echo "$base/$dir/$f" >>"$out/livegate.urls"
	echo "http://127.0.0.1:$nport/live/deliv0/$dir/$f" >>"$out/nginx.urls"
done
cp "$out/media.m3u8" "$root/live/deliv0/$media"
echo "snapshot: $(wc -l <"$out/livegate.urls") files, $(du -sk "$root" | cut -f1) KB (init + segments of $media, ended)"

# the workers run as whoever runs this (as root, nginx would otherwise make
# them www-data, who may not reach files under a private directory)
cat >"$out/nginx.conf" <<NGINX
user $(id -un) $(id -gn);
worker_processes 2;
daemon off;
pid $out/nginx.pid;
error_log $out/nginx.error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
	types { video/mp4 mp4; application/vnd.apple.mpegurl m3u8; }
	server {
		listen 127.0.0.1:$nport;
		root $root;
	}
}
NGINX
nginx -c "$out/nginx.conf" -p "$out" &
ng_pid=$!
for _ in $(seq 50); do curl -sf "$(head -1 "$out/nginx.urls")" -o /dev/null && break; sleep 0.1; done

for pass in $(seq "$passes"); do
	run livegate "$gw_pid"
	run nginx "$ng_pid"
done
python3 - "$out" "$passes" <<'PY'
import json, sys
out, passes = sys.argv[1], int(sys.argv[2])
def load(name):
    rs = [json.load(open(f"{out}/{name}.{p}.json")) for p in range(1, passes + 1)]
    return rs
lg, ng = load("livegate"), load("nginx")
mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)
ratio = lambda a, b: f"{a / b:.2f}" if b else "nan"
for k, label in (("requests_per_s", "req/s"), ("mb_per_s", "MB/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
    a, b = mean(lg, k), mean(ng, k)
    print(f"{label:8s} livegate {a:10.2f}  nginx {b:10.2f}  livegate/nginx {ratio(a, b)}")
print("errors: livegate", sum(r["errors"] for r in lg), "nginx", sum(r["errors"] for r in ng),
      "; lgload CPU (cores):", [r["lgload_cpu"] for r in lg + ng])
if any(r["errors"] or not r["requests"] for r in lg + ng):
    sys.exit("delivery.sh: a server failed requests (see bench-get's last error above): its figures mean nothing")
PY
echo "reports in $out"
