#!/usr/bin/env bash
# bench/soak.sh: two gateways on one NATS server (JetStream) under a steady
# load for a long time; do their goroutines, heap, memory and open files
# stay flat?
#
#   bench/soak.sh            DURATION=30m, a sample every minute
#   bench/soak.sh --smoke    1 minute, a sample every 10 s
#
# It builds the gateway, lgload and nats-server (github.com/nats-io/
# nats-server/v2, the version go.mod names: JetStream with per-message
# TTLs) into OUT_DIR, starts NATS with JetStream and two gateways joined to
# it on free loopback ports, then two lgload runs across them for
# DURATION: stream A published to gateway 1 and watched (and talked
# about) through gateway 2, stream B the other way round, so that the
# cluster's proxy and the chat's NATS bus carry the load too. In all: 2
# publishers (SIZE, 640x360 by default: the soak looks for leaks, not for
# the most the CPU holds), 200 low-latency HLS viewers (VIEWERS per
# stream), 500 chat members (CHAT per stream) sending CHAT_RATE messages
# a second per room.
#
# Every SAMPLE seconds, once the load is on, it reads from each gateway's
# /metrics go_goroutines, go_memstats_heap_alloc_bytes and process_open_fds
# (the Go and process collectors), and from /proc its resident memory,
# threads and open files (the same figures when /metrics lacks them). At
# the end each series is judged: after the first fifth of the samples
# (warm-up), a least-squares line through the rest; the series is flat
# when that line rises over the judged time by no more than 10 % of the
# series' median or a small absolute allowance (goroutines 50, heap 16 MB,
# RSS 32 MB, open files 20, threads 4), whichever is larger. Metrics
# missing from /metrics are named. Samples go to OUT_DIR/samples.jsonl, the
# verdicts and the load's summary to REPORT.
#
# Environment: DURATION (30m; smoke 1m; s, m or h), SAMPLE (seconds, 60;
# smoke 10), VIEWERS (100), CHAT (250), CHAT_RATE (5), SIZE (640x360),
# OUT_DIR (a new temporary directory), REPORT (OUT_DIR/soak.json).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
case "${1:-}" in
--smoke) smoke=1 ;;
-h | --help) sed -n '2,37p' "$0"; exit 0 ;;
"") ;;
*) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
for tool in go ffmpeg python3 curl; do
	command -v "$tool" >/dev/null || { echo "soak.sh: $tool not found" >&2; exit 1; }
done
duration=${DURATION:-30m}
sample=${SAMPLE:-60}
if [ $smoke = 1 ]; then duration=${DURATION:-1m}; sample=${SAMPLE:-10}; fi
viewers=${VIEWERS:-100}
chat=${CHAT:-250}
chat_rate=${CHAT_RATE:-5}
size=${SIZE:-640x360}
out=${OUT_DIR:-$(mktemp -d -t lgsoak-XXXXXX)}
report=${REPORT:-$out/soak.json}
mkdir -p "$out"
seconds=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)([smh])", sys.argv[1])
if not m:
    sys.exit("soak.sh: DURATION %r: want a number and s, m or h" % sys.argv[1])
print(int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]])' "$duration")
go build -o "$out/livegate" ./cmd/livegate
go build -o "$out/lgload" ./bench/lgload
go build -o "$out/nats-server" github.com/nats-io/nats-server/v2

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# NATS with JetStream on a free port (it writes the port it got to a file)
mkdir -p "$out/nats"
"$out/nats-server" -js -a 127.0.0.1 -p -1 -sd "$out/nats/store" --ports_file_dir "$out/nats" >"$out/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
nats_url=
for _ in $(seq 100); do
	f=$(ls "$out"/nats/*.ports 2>/dev/null | head -1 || true)
	if [ -n "$f" ]; then nats_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$f" 2>/dev/null || true); fi
	[ -n "$nats_url" ] && break
	sleep 0.1
done
[ -n "$nats_url" ] || { echo "soak.sh: nats-server did not start" >&2; cat "$out/nats.log" >&2; exit 1; }

# two gateways; 500 chat members come from one address
echo '{"max_streams": 4, "max_conns_per_ip": 0}' >"$out/gateway.json"
gw_pid=() gw_url=()
for i in 1 2; do
	port=$(free_port)
	"$out/livegate" --listen "127.0.0.1:$port" --config "$out/gateway.json" --nats-url "$nats_url" \
		--advertise "http://127.0.0.1:$port" >"$out/gateway$i.log" 2>&1 &
	gw_pid+=("$!")
	pids+=("$!")
	gw_url+=("http://127.0.0.1:$port")
done
for u in "${gw_url[@]}"; do
	for _ in $(seq 100); do curl -sf "$u/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
	curl -sf "$u/healthz" >/dev/null || { echo "soak.sh: gateway $u did not start" >&2; cat "$out"/gateway*.log >&2; exit 1; }
done
echo "nats $nats_url; gateway 1 ${gw_url[0]} (pid ${gw_pid[0]}), gateway 2 ${gw_url[1]} (pid ${gw_pid[1]})"
echo "load: 2 publishers ($size), $((2 * viewers)) LL-HLS viewers, $((2 * chat)) chat members ($chat_rate msg/s per room), across the gateways, for $duration; a sample every $sample s"

# the load: A on gateway 1 watched through 2, B the other way round
lg_pid=()
for ab in a b; do
	if [ $ab = a ]; then origin=${gw_url[0]} url=${gw_url[1]}; else origin=${gw_url[1]} url=${gw_url[0]}; fi
	"$out/lgload" -origin "$origin" -url "$url" -prefix "soak$ab" -publishers 1 -viewers "$viewers" -mode ll \
		-chat "$chat" -chat-rate "$chat_rate" -size "$size" -duration "${seconds}s" -start-wait 90s \
		-json "$out/load-$ab.json" >"$out/load-$ab.txt" 2>"$out/load-$ab.progress" &
	lg_pid+=("$!")
	pids+=("$!")
done
# sampling starts once both runs are in their window (viewers and chat on)
for _ in $(seq 1800); do
	n=0
	for ab in a b; do grep -q 's  publishers live' "$out/load-$ab.progress" 2>/dev/null && n=$((n + 1)); done
	[ $n = 2 ] && break
	for p in "${lg_pid[@]}"; do kill -0 "$p" 2>/dev/null || { echo "soak.sh: lgload ended early" >&2; tail -5 "$out"/load-*.progress >&2; exit 1; }; done
	sleep 0.2
done

# samples at 0, SAMPLE, 2 SAMPLE... while both runs' windows last: each
# progress line gives the seconds its window has run, so the first window
# to end is known (less 5 s, for the runs to stop their clients)
: >"$out/samples.jsonl"
start=$SECONDS
stop=$((start + seconds))
for ab in a b; do
	ran=$(grep 's  publishers live' "$out/load-$ab.progress" | tail -1 | sed -n 's/^lgload: *\([0-9]*\)\..*/\1/p')
	end=$((start - ${ran:-0} + seconds - 5))
	[ $end -lt $stop ] && stop=$end
done
# one sampler process for the whole run (a process per sample would take
# seconds of its own on a loaded machine)
python3 - "$out/samples.jsonl" "$((stop - start))" "$sample" "${gw_pid[0]}" "${gw_url[0]}" "${gw_pid[1]}" "${gw_url[1]}" "${lg_pid[@]}" <<'PY'
import json, os, sys, time, urllib.request
path, span, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gws = [(sys.argv[4], sys.argv[5]), (sys.argv[6], sys.argv[7])]
loads = sys.argv[8:]
want = {"go_goroutines": "goroutines", "go_memstats_heap_alloc_bytes": "heap_bytes", "process_open_fds": "open_fds",
        "livegate_streams_live": "streams_live"}

def alive(pid):
    try:
        os.kill(int(pid), 0)
        return True
    except OSError:
        return False

def sample(i, pid, url, t):
    row = {"t": round(t, 1), "gateway": i + 1}
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        chat = 0.0
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            base = name.split("{")[0]
            if base in want:
                row[want[base]] = float(value)
            elif base == "livegate_chat_users":
                chat += float(value)
        row["chat_users"] = chat
    except Exception as e:
        row["metrics_error"] = str(e)
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k == "VmRSS":
                row["rss_bytes"] = int(v.split()[0]) * 1024
            elif k == "Threads":
                row["threads"] = int(v)
        row["proc_fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError as e:
        row["proc_error"] = str(e)
    row["load"] = open("/proc/loadavg").read().split()[:3]
    return row

def f(r, k, scale=1):
    return "%.0f" % (r[k] / scale) if k in r else "-"

t0 = time.monotonic()
k = 0
with open(path, "a") as out:
    while k * every < span:
        time.sleep(max(0, t0 + k * every - time.monotonic()))
        if time.monotonic() - t0 >= span or not all(alive(p) for p in loads):
            break
        rows = [sample(i, pid, url, time.monotonic() - t0) for i, (pid, url) in enumerate(gws)]
        for r in rows:
            out.write(json.dumps(r) + "\n")
        out.flush()
        print("soak: %4.0f s  " % rows[0]["t"] + "  ".join(
            "gw%d goroutines %s heap %s MB fds %s (proc %s) rss %s MB threads %s" % (
                r["gateway"], f(r, "goroutines"), f(r, "heap_bytes", 1e6), f(r, "open_fds"), f(r, "proc_fds"),
                f(r, "rss_bytes", 1e6), f(r, "threads")) for r in rows) + "  load %s" % " ".join(rows[0]["load"]), flush=True)
        k += 1
PY
rc=0
for p in "${lg_pid[@]}"; do wait "$p" || rc=$?; done
[ $rc = 0 ] || { echo "soak.sh: lgload failed (exit $rc)" >&2; tail -5 "$out"/load-*.progress >&2; exit 1; }
for ab in a b; do echo "--- load $ab"; cat "$out/load-$ab.txt"; done

python3 - "$out/samples.jsonl" "$report" "$duration" "$sample" "$out/load-a.json" "$out/load-b.json" <<'PY'
import json, statistics, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
series = {  # name: (JSON key, absolute allowance, unit scale, unit)
    "goroutines": ("goroutines", 50, 1, ""),
    "heap": ("heap_bytes", 16e6, 1e6, " MB"),
    "open_fds": ("open_fds", 20, 1, ""),
    "rss": ("rss_bytes", 32e6, 1e6, " MB"),
    "threads": ("threads", 4, 1, ""),
    "proc_fds": ("proc_fds", 20, 1, ""),
}
metric_of = {"goroutines": "go_goroutines", "heap": "go_memstats_heap_alloc_bytes", "open_fds": "process_open_fds"}
rep = {"duration": sys.argv[3], "sample_s": int(sys.argv[4]), "samples": len(samples) // 2, "gateways": {}, "missing_metrics": []}
for name, metric in metric_of.items():
    if not any(series[name][0] in s for s in samples):
        rep["missing_metrics"].append(metric)
flat_all = True
for gw in (1, 2):
    rows = [s for s in samples if s["gateway"] == gw]
    out = {}
    for name, (key, allowance, scale, unit) in series.items():
        pts = [(s["t"], s[key]) for s in rows if key in s]
        if len(pts) < 3:
            continue
        skip = max(1, len(pts) // 5)
        judged = pts[skip:]
        if len(judged) < 2:
            judged = pts
        ts = [p[0] for p in judged]
        vs = [p[1] for p in judged]
        mt, mv = statistics.fmean(ts), statistics.fmean(vs)
        den = sum((t - mt) ** 2 for t in ts) or 1
        slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den
        rise = slope * (ts[-1] - ts[0])
        level = statistics.median(vs)
        limit = max(0.10 * level, allowance)
        flat = rise <= limit
        flat_all = flat_all and flat
        out[name] = {"first": pts[0][1], "last": pts[-1][1], "min": min(p[1] for p in pts), "max": max(p[1] for p in pts),
                     "median": level, "rise": round(rise, 1), "rise_per_hour": round(slope * 3600, 1), "limit": round(limit, 1),
                     "flat": flat, "samples": len(pts), "judged": len(judged)}
    rep["gateways"][str(gw)] = out
rep["flat"] = flat_all
loads = {}
for ab, path in (("a", sys.argv[5]), ("b", sys.argv[6])):
    t = json.load(open(path))["total"]
    c = t.get("chat") or {}
    loads[ab] = {k: t.get(k) for k in ("viewers", "requests", "errors", "stalls", "viewers_stalled", "delivery_p50_ms",
                                       "delivery_p99_ms", "late", "delivered", "publisher_speed_median", "origin_stalls")}
    loads[ab]["chat"] = {k: c.get(k) for k in ("clients", "joined", "sent", "delivered", "expected", "p50_ms", "p99_ms", "errors")}
rep["load"] = loads
rep["load_average_end"] = samples[-1]["load"] if samples else None
json.dump(rep, open(sys.argv[2], "w"), indent=2)
for gw, out in rep["gateways"].items():
    for name, v in out.items():
        scale, unit = series[name][2], series[name][3]
        print(f"gateway {gw} {name:10}: {v['first']/scale:.1f} -> {v['last']/scale:.1f}{unit} (min {v['min']/scale:.1f}, max {v['max']/scale:.1f}); "
              f"trend {v['rise']/scale:+.1f}{unit} over the judged {v['judged']} samples (limit {v['limit']/scale:.1f}): {'flat' if v['flat'] else 'NOT FLAT'}")
if rep["missing_metrics"]:
    print("missing from /metrics: " + ", ".join(rep["missing_metrics"]) +
          " (the gateway's registry has no Go or process collector: cmd/livegate/gateway.go); judged from /proc instead")
print("soak: " + ("flat" if flat_all else "NOT FLAT") + f" ({rep['samples']} samples of each gateway over {rep['duration']})")
PY
echo "report: $report (samples in $out/samples.jsonl)"
