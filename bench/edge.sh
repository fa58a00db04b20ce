#!/usr/bin/env bash
# bench/edge.sh: how many low-latency HLS viewers one gateway holds alone,
# and through one nginx edge (deploy/nginx: single.conf, locations.conf,
# collapse.conf) on the same machine.
#
#   bench/edge.sh            steps of 50, 100, 200, 400, 800 viewers, 20 s each
#   bench/edge.sh --smoke    steps of 5 and 20 viewers, 6 s each
#
# One gateway (built from ./cmd/livegate) on a free loopback port, one
# stream published to it for the whole run by lgload (ffmpeg's test
# pattern over the ingest WebSocket, SIZE 1280x720: the default ladder of
# three renditions), and nginx with the repository's edge configuration in
# front of it. For each path (direct: the viewers on the gateway; edge: the
# viewers on nginx) and each step, one lgload run of N viewers (-mode ll:
# parts and blocking reloads, the audio rendition too, as players do) that
# reports, per step:
# - the delivery delay: from a part's first listing at the gateway (seen by
#   lgload's prober there) to the end of a viewer's download of it: p50,
#   p99, max, and the parts later than 250 ms (LATE_MS);
# - stalls (2 s without new media) beside the origin's own gaps between
#   parts (a transcoder short of CPU stalls every path alike), errors;
# - the gateway's requests (from its /metrics, the prober's left out) per
#   part or playlist version listed: about 1 through an edge;
# - the CPU of the gateway (its process alone), its transcoder, nginx
#   (master and workers) and lgload, the load average and CPU steal.
# A step holds when every part came within LATE_MS of its listing (held),
# or 99 % of them did (held_p99), with no stall the origin did not have and
# errors under 0.1 %. A path stops after its first step that does not hold
# at p99 (or at MAX_VIEWERS). The summary is printed and written as JSON
# to REPORT.
#
# The machine is shared: lgload, nginx, ffmpeg and the gateway compete for
# its cores, and so does anything else running. Read every figure with the
# load average printed beside it.
#
# Environment: STEPS ("50 100 200 400 800"; smoke "5 20"), DURATION (per
# step, 20s; smoke 6s), SIZE (1280x720; smoke 640x360), LATE_MS (250),
# MAX_VIEWERS (800), PATHS ("direct edge"), OUT_DIR (a new temporary
# directory), REPORT (OUT_DIR/edge.json).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
case "${1:-}" in
--smoke) smoke=1 ;;
-h | --help) sed -n '2,40p' "$0"; exit 0 ;;
"") ;;
*) echo "edge.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
for tool in go ffmpeg python3 curl nginx; do
	command -v "$tool" >/dev/null || { echo "edge.sh: $tool not found" >&2; exit 1; }
done
steps=${STEPS:-50 100 200 400 800}
duration=${DURATION:-20s}
size=${SIZE:-1280x720}
if [ $smoke = 1 ]; then steps=${STEPS:-5 20}; duration=${DURATION:-6s}; size=${SIZE:-640x360}; fi
late_ms=${LATE_MS:-250}
max_viewers=${MAX_VIEWERS:-800}
paths=${PATHS:-direct edge}
out=${OUT_DIR:-$(mktemp -d -t lgedge-XXXXXX)}
report=${REPORT:-$out/edge.json}
mkdir -p "$out"
go build -o "$out/livegate" ./cmd/livegate
go build -o "$out/lgload" ./bench/lgload

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# cpu PID...: CPU seconds (user + system) of the processes
cpu() { python3 - "$@" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
t = 0
for p in sys.argv[1:]:
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += (int(f[11]) + int(f[12])) / hz
    except OSError:
        pass
print(f"{t:.3f}")
PY
}
# requests: the gateway's requests under /live/ so far
requests() {
	curl -sf "$gw_url/metrics" | awk '/^livegate_http_requests_total\{/ {n += $2} END {printf "%d\n", n}'
}

machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $machine, load average $(loadavg)"

# the gateway
gw_port=$(free_port)
gw_url=http://127.0.0.1:$gw_port
echo '{"max_streams": 4}' >"$out/gateway.json"
"$out/livegate" --listen "127.0.0.1:$gw_port" --config "$out/gateway.json" >"$out/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 100); do curl -sf "$gw_url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# nginx with the repository's edge configuration, paths replaced as
# deploy/check.sh does; workers as whoever runs this
ng="$out/nginx"
mkdir -p "$ng/livegate" "$ng/tmp"
ng_port=$(free_port)
edge_url=http://127.0.0.1:$ng_port
subst="s|/etc/nginx/livegate/|$ng/livegate/|; s|/var/cache/nginx/livegate|$ng/cache|; s|/run/nginx-livegate-collapse.sock|$ng/collapse.sock|; s|server 127.0.0.1:8080;|server 127.0.0.1:$gw_port;|; s|listen 80;|listen 127.0.0.1:$ng_port;|"
for f in locations.conf collapse.conf; do sed -e "$subst" "deploy/nginx/$f" >"$ng/livegate/$f"; done
sed -e "$subst" deploy/nginx/single.conf >"$ng/single.conf"
cat >"$ng/nginx.conf" <<NGINX
user $(id -un) $(id -gn);
worker_processes 2;
daemon off;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 40000;
http {
	access_log off;
	client_body_temp_path $ng/tmp/body;
	proxy_temp_path $ng/tmp/proxy;
	fastcgi_temp_path $ng/tmp/fastcgi;
	uwsgi_temp_path $ng/tmp/uwsgi;
	scgi_temp_path $ng/tmp/scgi;
	include $ng/single.conf;
}
NGINX
nginx -c "$ng/nginx.conf" -p "$ng" &
ng_pid=$!
pids+=("$ng_pid")
for _ in $(seq 100); do curl -sf "$edge_url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$edge_url/healthz" >/dev/null || { echo "edge.sh: nginx did not start:" >&2; cat "$ng/error.log" >&2; exit 1; }

# the stream, for the whole run
n_steps=$(wc -w <<<"$steps")
secs=$(( ( ${duration%s} + 25 ) * n_steps * 2 + 120 ))
"$out/lgload" -url "$gw_url" -publishers 1 -viewers 0 -probe=false -size "$size" -prefix edge \
	-duration "${secs}s" -start-wait 90s >"$out/publisher.txt" 2>"$out/publisher.log" &
pub_pid=$!
pids+=("$pub_pid")
python3 - "$gw_url/live/edge0/index.m3u8" <<'PY' || { echo "edge.sh: the stream did not start" >&2; tail "$out/publisher.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(180):
    try:
        if b"#EXT-X-STREAM-INF" in urllib.request.urlopen(sys.argv[1], timeout=15).read():
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
tc_pids() { pgrep -P "$gw_pid" || true; }
echo "gateway $gw_url (pid $gw_pid), nginx $edge_url (pid $ng_pid), stream edge0 ($size), $duration per step, late > $late_ms ms"

results="$out/steps.jsonl"
: >"$results"
for path in $paths; do
	url=$gw_url
	[ "$path" = edge ] && url=$edge_url
	for n in $steps; do
		[ "$n" -le "$max_viewers" ] || break
		name="$path-$n"
		stat0=$(head -1 /proc/stat)
		ng_procs="$ng_pid $(pgrep -P "$ng_pid" | tr '\n' ' ')"
		gw0=$(cpu "$gw_pid"); tc0=$(cpu $(tc_pids)); ng0=$(cpu $ng_procs); req0=$(requests)
		load0=$(loadavg)
		rc=0
		"$out/lgload" -url "$url" -origin "$gw_url" -publish=false -prefix edge -publishers 1 -viewers "$n" \
			-mode ll -duration "$duration" -late "${late_ms}ms" -start-wait 30s -json "$out/$name.json" \
			>"$out/$name.txt" 2>"$out/$name.progress" || rc=$?
		gw1=$(cpu "$gw_pid"); tc1=$(cpu $(tc_pids)); ng1=$(cpu $ng_procs); req1=$(requests)
		if [ $rc != 0 ]; then
			echo "edge.sh: lgload $name failed (exit $rc):" >&2
			tail -5 "$out/$name.progress" >&2
			exit 1
		fi
		python3 - "$out/$name.json" "$path" "$n" "$late_ms" "$gw0" "$gw1" "$tc0" "$tc1" "$ng0" "$ng1" "$req0" "$req1" \
			"$load0" "$(loadavg)" "$stat0" "$(head -1 /proc/stat)" >>"$results" <<'PY'
import json, sys
(rep, path, n, late_ms, gw0, gw1, tc0, tc1, ng0, ng1, req0, req1, load0, load1, stat0, stat1) = sys.argv[1:]
r = json.load(open(rep))
t = r["total"]
w = r["window_s"] or 1
# the CPU counters span the whole lgload run (start, window, stop)
span = w + 4
a = [int(x) for x in stat0.split()[1:]]
b = [int(x) for x in stat1.split()[1:]]
d = [y - x for x, y in zip(a, b)]
origin = int(req1) - int(req0) - t["probe_requests"]
files = max(t["parts_listed"] + t["playlist_versions"], 1)
gap = t["listing_gap_max_ms"] / 1000
stalled_beyond = t["viewers_stalled"] > 0 and t["longest_stall_s"] > gap + 1.4
errors_ok = t["errors"] * 1000 <= max(t["requests"], 1)
late_share = t["late"] / max(t["delivered"], 1)
row = {
    "path": path, "viewers": int(n), "window_s": w,
    "delivered": t["delivered"], "late": t["late"], "late_share": round(late_share, 4),
    "delivery_p50_ms": t["delivery_p50_ms"], "delivery_p99_ms": t["delivery_p99_ms"], "delivery_max_ms": t["delivery_max_ms"],
    "stalls": t["stalls"], "viewers_stalled": t["viewers_stalled"], "longest_stall_s": t["longest_stall_s"],
    "origin_gap_p50_ms": t["listing_gap_p50_ms"], "origin_gap_max_ms": t["listing_gap_max_ms"], "origin_stalls": t["origin_stalls"],
    "errors": t["errors"], "requests": t["requests"], "requests_per_s": t["requests_per_s"],
    "origin_requests": origin, "origin_requests_per_s": round(origin / span, 1),
    "origin_per_file": round(origin / files, 3), "parts_listed": t["parts_listed"], "playlist_versions": t["playlist_versions"],
    "gateway_cpu": round((float(gw1) - float(gw0)) / span, 3),
    "transcoder_cpu": round((float(tc1) - float(tc0)) / span, 3),
    "nginx_cpu": round((float(ng1) - float(ng0)) / span, 3) if path == "edge" else None,
    "lgload_cpu": r.get("lgload_cpu"),
    "load_before": load0, "load_after": load1,
    "steal_pct": round(100 * d[7] / max(sum(d), 1), 1) if len(d) > 7 else None,
    "edge_cache": t.get("edge_cache"),
    "last_error": t.get("last_error", ""),
}
row["held"] = t["delivered"] > 0 and t["late"] == 0 and not stalled_beyond and errors_ok
row["held_p99"] = t["delivered"] > 0 and t["delivery_p99_ms"] <= float(late_ms) and not stalled_beyond and errors_ok
print(json.dumps(row))
PY
		python3 - "$results" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
cpu = f"gateway {r['gateway_cpu']:.2f} transcoder {r['transcoder_cpu']:.2f}"
if r["nginx_cpu"] is not None:
    cpu += f" nginx {r['nginx_cpu']:.2f}"
cpu += f" lgload {r['lgload_cpu']:.2f}"
print(f"== {r['path']:6} {r['viewers']:4} viewers: delivery p50 {r['delivery_p50_ms']:.0f} ms p99 {r['delivery_p99_ms']:.0f} ms max {r['delivery_max_ms']:.0f} ms, "
      f"late {r['late']}/{r['delivered']}; stalled {r['viewers_stalled']} (origin gaps p50 {r['origin_gap_p50_ms']:.0f} max {r['origin_gap_max_ms']:.0f} ms); "
      f"errors {r['errors']}; origin {r['origin_requests_per_s']} req/s, {r['origin_per_file']} per file; CPU {cpu}; "
      f"load {r['load_after']}, steal {r['steal_pct']} %: {'holds' if r['held'] else 'holds at p99' if r['held_p99'] else 'does not hold'}")
PY
		held=$(python3 -c 'import json,sys; print(int([json.loads(l) for l in open(sys.argv[1])][-1]["held_p99"]))' "$results")
		[ "$held" = 1 ] || break
	done
done

python3 - "$results" "$report" "$machine" "$size" "$duration" "$late_ms" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rep = {"machine": sys.argv[3], "source": sys.argv[4], "duration": sys.argv[5], "late_ms": int(sys.argv[6]), "steps": rows, "held": {}}
for path in sorted({r["path"] for r in rows}):
    ok = [r["viewers"] for r in rows if r["path"] == path and r["held"]]
    ok99 = [r["viewers"] for r in rows if r["path"] == path and r["held_p99"]]
    rep["held"][path] = {"every_part": max(ok, default=0), "p99": max(ok99, default=0)}
json.dump(rep, open(sys.argv[2], "w"), indent=2)
for path, h in rep["held"].items():
    print(f"{path}: every part within {rep['late_ms']} ms up to {h['every_part']} viewers; 99 % of parts up to {h['p99']} (of the steps run)")
PY
echo "report: $report (steps in $out)"
