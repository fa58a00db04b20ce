#!/usr/bin/env bash
# bench/transcode.sh: transcoding cost of a live 720p stream, livegate (the
# gateway + its ffmpeg) vs the bare ffmpeg command it runs, same input, same
# real-time rate; and the most concurrent real-time streams of each.
#
#   bench/transcode.sh             full run: 30 s input, 20 s windows, N = 1..6
#   bench/transcode.sh --smoke     4 s input, 4 s windows, N = 1 (< 60 s)
#
# Input (made once, OUT_DIR/input.webm, or INPUT=FILE): ffmpeg lavfi
# testsrc2 1280x720 30 fps + 440 Hz sine, VP8 (libvpx realtime, cpu-used 8,
# 2500k, keyframe every 2 s) + Opus 128k in WebM, as Chrome's MediaRecorder
# sends by default.
# For N = 1, 2, 3 ... both sides run in turn, N streams at once:
# - livegate: a fresh gateway (go build ./cmd/livegate, embedded defaults,
#   free 127.0.0.1 port); lgload -replay INPUT -publishers N -viewers 0
#   publishes the file looped in real time over /ingest/{stream} (ffmpeg
#   -re -c copy, 100 ms chunks). Window: from every stream's 720p playlist
#   listing media + SETTLE, DURATION long; CPU = utime+stime (/proc) of the
#   gateway and of its ffmpeg children; speed = media listed in the 720p
#   playlist (segments + parts) during the window / wall time (lgload's
#   status speeds are kept as a cross-check).
# - bare: per stream, the same feeder (ffmpeg -re -stream_loop -1 -i INPUT
#   -c copy -f webm pipe:1) into a pipe read by ffmpeg with the gateway's
#   very argument list (livegate --print-ffmpeg-args 1280x720) plus
#   `-progress pipe:3` (reporting only); its MPEG-TS output goes to a pipe
#   that cat reads and discards. Window: from its first progress report +
#   SETTLE, DURATION long; CPU = the transcoder's utime+stime (not the
#   feeder's); speed = output media time / wall time over the window.
# The lists are compared: the gateway's ffmpeg's /proc/PID/cmdline must
# equal the bare one (same_ffmpeg_args in the report).
# Order: livegate N=1, bare N=1, COST_PASSES times (alternating, so a change
# of machine load hits both), then N = 2, 3 ... one pass per side each.
# A side keeps real time at N when every stream's speed >= SPEED_MIN (in
# every pass at N); each side stops at its first failing N (MAX_STREAMS
# bounds it). Cost = CPU seconds per media second (cores / sum of speeds)
# at N = 1, mean over the passes; ratio = livegate / bare.
# PAIRED=1 runs each N = 1 cost pass as both sides at once instead (the
# bare pipeline starts first; it is sampled at the livegate window's two
# instants), so that the load of other processes, which moves x264's CPU
# per frame by more than the gap measured, hits both sides alike.
# Every pass also records the machine (/proc/stat: busy cores, steal, and
# "others" = busy minus this script's own process tree) and is marked
# disturbed when others > 0.1 core or steal > 5 %.
# Environment: DURATION (20s full, 4s smoke), SETTLE (3s), INPUT_SECONDS
# (30, smoke 4), MAX_STREAMS (6, smoke 1), COST_PASSES (2, smoke 1),
# SPEED_MIN (0.97), INPUT, OUT_DIR, REPORT (OUT_DIR/transcode.json),
# GATEWAY (a prebuilt gateway binary), PAIRED (0; 1: see above).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
case "${1:-}" in
"") ;;
--smoke) smoke=1 ;;
-h | --help) sed -n '2,47p' "$0"; exit 0 ;;
*) echo "transcode.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "transcode.sh: one argument at most (see --help)" >&2; exit 2; }
for tool in go ffmpeg python3 curl; do
	command -v "$tool" >/dev/null || { echo "transcode.sh: $tool not found" >&2; exit 1; }
done

dur=${DURATION:-20s}
insec=${INPUT_SECONDS:-30}
maxn=${MAX_STREAMS:-6}
reps=${COST_PASSES:-2}
if [ $smoke = 1 ]; then dur=${DURATION:-4s}; insec=${INPUT_SECONDS:-4}; maxn=${MAX_STREAMS:-1}; reps=${COST_PASSES:-1}; fi
settle=${SETTLE:-3}
speedmin=${SPEED_MIN:-0.97}
paired=${PAIRED:-0}
[[ $paired =~ ^[01]$ ]] || { echo "transcode.sh: PAIRED: want 0 or 1, got $paired" >&2; exit 2; }
case "$dur" in *s) ;; *) echo "transcode.sh: DURATION $dur: want seconds like 20s" >&2; exit 2 ;; esac
durs=${dur%s}
for v in "$durs" "$settle" "$insec" "$maxn" "$reps"; do
	[[ $v =~ ^[1-9][0-9]{0,3}$ ]] || { echo "transcode.sh: DURATION, SETTLE, INPUT_SECONDS, MAX_STREAMS, COST_PASSES: want 1 to 9999, got $v" >&2; exit 2; }
done
[ "$maxn" -le 20 ] && [ "$reps" -le 5 ] || { echo "transcode.sh: MAX_STREAMS at most 20, COST_PASSES at most 5" >&2; exit 2; }

out=${OUT_DIR:-$(mktemp -d -t lgtranscode-XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
report=${REPORT:-$out/transcode.json}
if [ -n "${GATEWAY:-}" ]; then cp "$GATEWAY" "$out/livegate"; else go build -o "$out/livegate" ./cmd/livegate; fi
go build -o "$out/lgload" ./bench/lgload

input=${INPUT:-$out/input.webm}
if [ ! -s "$input" ]; then
	ffmpeg -hide_banner -nostats -loglevel error -y \
		-f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
		-t "$insec" -c:v libvpx -deadline realtime -cpu-used 8 -b:v 2500k -g 60 \
		-c:a libopus -b:a 128k -f webm "$input.part"
	mv "$input.part" "$input"
fi
mapfile -t targs < <("$out/livegate" --print-ffmpeg-args 1280x720)
# as many streams as the passes publish (max_streams defaults to the cores);
# a gateway built before max_streams existed has no such bound
echo '{"max_streams": 100}' >"$out/gateway.json"
gwconf=()
"$out/livegate" --config "$out/gateway.json" --print-config >/dev/null 2>&1 && gwconf=(--config "$out/gateway.json")
printf '%s\n' "${targs[@]}" >"$out/ffmpeg-args.txt"

machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -h | awk '/^Mem:/ {print $2}') RAM, $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
echo "machine: $machine, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# signal SIG PID...: sends SIG to those pids that are still children of
# this shell (never to a pid the system has reused for another process);
# returns 0 if it signalled any.
signal() {
	local sig=$1 p any=1
	shift
	for p in "$@"; do
		[ "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" = $$ ] || continue
		kill "-$sig" "$p" 2>/dev/null && any=0
	done
	return $any
}

# Every process started here is in pids; cleanup ends what is left.
pids=()
cleanup() {
	signal INT "${pids[@]}" && sleep 0.5
	signal KILL "${pids[@]}" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID...: SIGINT, then SIGKILL what is left after 10 s; waits for all.
stop() {
	local p
	signal INT "$@" || true
	for _ in $(seq 100); do
		signal 0 "$@" || break
		sleep 0.1
	done
	signal KILL "$@" || true
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# usage prints the wall clock, the /proc/stat cpu line and this shell's
# reaped children's CPU ticks (cutime + cstime: every process this script
# started and waited for, their own children included).
usage() {
	echo "$EPOCHREALTIME $(head -1 /proc/stat | cut -d' ' -f2-) $(awk '{print $16 + $17}' /proc/$$/stat)"
}

# ticks PID... prints the sum of utime + stime of the pids.
ticks() {
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
	echo "$t"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# livegate_pass N DIR: N publishers through a fresh gateway.
livegate_pass() {
	local n=$1 d=$2 port gw base i m
	port=$(free_port)
	base=http://127.0.0.1:$port
	"$out/livegate" --listen "127.0.0.1:$port" "${gwconf[@]}" >"$d/gateway.log" 2>&1 &
	gw=$!
	pids+=("$gw")
	for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
	local rc=0 lg kid media=()
	timeout --kill-after=5 $((durs + settle + 90)) "$out/lgload" -url "$base" -prefix tc \
		-publishers "$n" -viewers 0 -replay "$input" -duration "$((durs + settle + 5))s" -start-wait 30s \
		-gateway-pid "$gw" -json "$d/lgload.json" >"$d/lgload.txt" 2>"$d/lgload.progress" &
	lg=$!
	pids+=("$lg")
	# Every stream's first (720p) media playlist, once it lists media.
	for _ in $(seq 150); do
		media=()
		for ((i = 0; i < n; i++)); do
			m=$(curl -sf -m 15 "$base/live/tc$i/index.m3u8" | grep -m1 '^[^#]' || true)
			[ -n "$m" ] && media+=("$base/live/tc$i/$m")
		done
		[ ${#media[@]} = "$n" ] && break
		sleep 0.2
	done
	# The gateway's first ffmpeg child's argument list, to compare with the
	# bare pass's.
	kid=$(pgrep -P "$gw" -x ffmpeg | head -1 || true)
	[ -n "$kid" ] && tr '\0' '\n' <"/proc/$kid/cmdline" >"$d/ffmpeg-cmdline.txt" 2>/dev/null
	if [ ${#media[@]} = "$n" ]; then
		sleep "$settle"
		window_sample "$d" 0 "$gw" "${media[@]}"
		sleep "$durs"
		window_sample "$d" 1 "$gw" "${media[@]}"
	else
		echo "transcode.sh: livegate streams not playable within 30 s (see $d/lgload.progress)" >&2
	fi
	wait "$lg" || rc=$?
	stop "$gw"
	[ $rc = 0 ] || echo "transcode.sh: lgload exited $rc (see $d/lgload.progress)" >&2
}

# window_sample DIR K GW URL...: appends "wall gateway-ticks ffmpeg-ticks
# ffmpeg-count" to DIR/window and saves each media playlist as
# DIR/playlistI.K.m3u8.
window_sample() {
	local d=$1 k=$2 gw=$3 kids i=0 u
	shift 3
	mapfile -t kids < <(pgrep -P "$gw" -x ffmpeg || true)
	echo "$EPOCHREALTIME $(ticks "$gw") $(ticks "${kids[@]}") ${#kids[@]}" >>"$d/window"
	[ -z "$pair_bare" ] || echo "$EPOCHREALTIME $(ticks "${tpids[@]}")" >>"$pair_bare/window"
	for u in "$@"; do
		curl -sf -m 5 "$u" >"$d/playlist$i.$k.m3u8" || true
		i=$((i + 1))
	done
}

# bare_start N DIR: starts N feeder | transcoder | cat pipelines (their
# pids in feeders, tpids, rest) and waits for every transcoder's first
# progress report; returns 1 if one did not come within 30 s.
feeders=() tpids=() rest=() pair_bare=
bare_start() {
	local n=$1 d=$2 i
	feeders=() tpids=() rest=()
	for ((i = 0; i < n; i++)); do
		mkfifo "$d/in$i" "$d/out$i" "$d/progress$i"
		# the transcoder's progress reports, timestamped: "wall out_time_us"
		while IFS= read -r l; do
			if [[ $l == out_time_us=* ]]; then echo "$EPOCHREALTIME ${l#out_time_us=}"; fi
		done <"$d/progress$i" >"$d/progress$i.txt" &
		rest+=($!)
		cat "$d/out$i" >/dev/null &
		rest+=($!)
		ffmpeg "${targs[@]}" -progress pipe:3 <"$d/in$i" >"$d/out$i" 3>"$d/progress$i" 2>"$d/transcoder$i.log" &
		tpids+=($!)
		ffmpeg -nostdin -hide_banner -nostats -loglevel error -re -stream_loop -1 -i "$input" \
			-t $((durs + settle + 60)) -c copy -cluster_time_limit 100 -flush_packets 1 -f webm pipe:1 \
			>"$d/in$i" 2>"$d/feeder$i.log" &
		feeders+=($!)
		pids+=("${rest[@]: -2}" "${tpids[-1]}" "${feeders[-1]}")
	done
	local started=0
	for _ in $(seq 300); do
		started=1
		for ((i = 0; i < n; i++)); do [ -s "$d/progress$i.txt" ] || started=0; done
		[ $started = 1 ] && break
		sleep 0.1
	done
	[ $started = 1 ] || echo "transcode.sh: bare transcoders did not start within 30 s (see $d/transcoder*.log)" >&2
	[ $started = 1 ]
}

# bare_stop: ends the pipelines bare_start started (the transcoders end at
# the end of their input).
bare_stop() {
	stop "${feeders[@]}"
	stop "${tpids[@]}" "${rest[@]}"
}

# bare_pass N DIR: N feeder | transcoder | cat pipelines.
bare_pass() {
	local d=$2
	if bare_start "$@"; then
		sleep "$settle"
		echo "$EPOCHREALTIME $(ticks "${tpids[@]}")" >"$d/window"
		sleep "$durs"
		echo "$EPOCHREALTIME $(ticks "${tpids[@]}")" >>"$d/window"
	fi
	bare_stop
}

# pass SIDE N REP: one pass, its machine usage, and its summary in
# OUT_DIR/SIDE.N.REP/pass.json; returns 0 when every stream kept real time.
pass() {
	local side=$1 n=$2 d="$out/$1.$2.$3"
	mkdir -p "$d"
	echo "== $side, $n stream(s), pass $3 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	usage >"$d/usage"
	"${side}_pass" "$n" "$d"
	pids=() # all ended and waited for: never signal a reused pid
	usage >>"$d/usage"
	summarize "$side" "$n" "$d" "$3"
}

# pair_pass REP: one N = 1 pass of both sides at once (PAIRED=1); returns
# 0 when both kept real time, 1 when livegate did not, 2 when bare did not,
# 3 when neither did.
pair_pass() {
	local dl="$out/livegate.1.$1" db="$out/bare.1.$1" rc=0
	mkdir -p "$dl" "$db"
	echo "== livegate and bare at once, 1 stream each, pass $1 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	usage >"$dl/usage"
	if bare_start 1 "$db"; then
		pair_bare=$db
		livegate_pass 1 "$dl"
		pair_bare=
	fi
	bare_stop
	pids=()
	usage >>"$dl/usage"
	cp "$dl/usage" "$db/usage"
	summarize livegate 1 "$dl" "$1" || rc=1
	summarize bare 1 "$db" "$1" || rc=$((rc + 2))
	return $rc
}

# summarize SIDE N DIR REP: DIR/pass.json from the pass's files; returns 0
# when every stream kept real time.
summarize() {
	python3 - "$@" "$speedmin" <<'PY'
import json, os, re, sys
side, n, d, rep, speedmin = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
HZ = 100
u0, u1 = ([float(x) for x in l.split()] for l in open(f"{d}/usage"))
wall = u1[0] - u0[0]
cpu = [b - a for a, b in zip(u0[1:11], u1[1:11])]  # user nice system idle iowait irq softirq steal guest guest_nice
total = sum(cpu[:8])
busy = (cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]) / HZ / wall
own = (u1[11] - u0[11]) / HZ / wall
m = {"wall_s": round(wall, 2), "busy_cores": round(busy, 3), "steal_pct": round(100 * cpu[7] / max(total, 1), 1),
     "own_cores": round(own, 3), "others_cores": round(max(busy - own, 0), 3)}
m["disturbed"] = m["others_cores"] > 0.1 or m["steal_pct"] > 5
r = {"streams": n, "pass": rep, "machine": m, "speeds": [], "ok": False}
def listing(path):
    """A media playlist's segment durations by MSN, its last complete
    segment's MSN and the duration of the parts listed after it."""
    msn, segs, parts = 0, [], 0.0
    for line in open(path).read().splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            parts += float(re.search(r"DURATION=([0-9.]+)", line).group(1))
        elif line.startswith("#EXTINF:"):
            segs.append(float(line[8:].split(",")[0]))
            parts = 0.0  # those parts were this segment's
    return {msn + k: v for k, v in enumerate(segs)}, msn + len(segs) - 1, parts
if side == "livegate" and os.path.exists(f"{d}/window") and len(open(f"{d}/window").readlines()) == 2:
    (w0, g0, f0, k0), (w1, g1, f1, k1) = ([float(x) for x in l.split()] for l in open(f"{d}/window"))
    r["window_s"] = round(w1 - w0, 3)
    r["ffmpeg_processes"] = int(k0)
    for i in range(n):
        try:
            _, l0, p0 = listing(f"{d}/playlist{i}.0.m3u8")
            s1, l1, p1 = listing(f"{d}/playlist{i}.1.m3u8")
            # segments that slid out of the window are one second long
            media = sum(s1.get(m, 1.0) for m in range(l0 + 1, l1 + 1)) + p1 - p0
        except (OSError, ValueError, AttributeError):
            media = 0
        r["speeds"].append(round(media / (w1 - w0), 3))
    r["gateway_cores"] = round((g1 - g0) / HZ / (w1 - w0), 3)
    r["ffmpeg_cores"] = round((f1 - f0) / HZ / (w1 - w0), 3)
    media = sum(r["speeds"])
    if os.path.exists(f"{d}/lgload.json"):
        lg = json.load(open(f"{d}/lgload.json"))
        r["status_speeds_median"] = [round(s["publisher_speed_median"], 3) for s in lg["streams"]]
        r["status_speeds_min"] = [round(s["publisher_speed_min"], 3) for s in lg["streams"]]
        r["feeders_cores"] = lg.get("sources_cpu", 0)
    if os.path.exists(f"{d}/ffmpeg-cmdline.txt"):
        got = open(f"{d}/ffmpeg-cmdline.txt").read().split("\n")[1:-1]
        r["same_ffmpeg_args"] = got == open(f"{os.path.dirname(d)}/ffmpeg-args.txt").read().split("\n")[:-1]
elif side == "bare" and os.path.exists(f"{d}/window"):
    (w0, t0), (w1, t1) = ([float(x) for x in l.split()] for l in open(f"{d}/window"))
    r["window_s"] = round(w1 - w0, 3)
    for i in range(n):
        pts = [[float(x) for x in l.split()] for l in open(f"{d}/progress{i}.txt") if len(l.split()) == 2]
        pts = [p for p in pts if w0 <= p[0] <= w1]
        sp = (pts[-1][1] - pts[0][1]) / 1e6 / (pts[-1][0] - pts[0][0]) if len(pts) >= 2 and pts[-1][0] > pts[0][0] else 0
        r["speeds"].append(round(sp, 3))
    r["ffmpeg_cores"] = round((t1 - t0) / HZ / (w1 - w0), 3)
    r["gateway_cores"] = 0
    media = sum(r["speeds"])
else:
    media = 0
if media > 0:
    r["total_cores"] = round(r["gateway_cores"] + r["ffmpeg_cores"], 3)
    r["cpu_s_per_media_s"] = round(r["total_cores"] / media, 4)
    r["gateway_cpu_s_per_media_s"] = round(r["gateway_cores"] / media, 4)
    r["ffmpeg_cpu_s_per_media_s"] = round(r["ffmpeg_cores"] / media, 4)
r["ok"] = len(r["speeds"]) == n and min(r["speeds"]) >= speedmin
json.dump(r, open(f"{d}/pass.json", "w"), indent=1)
print(f"{side}: {n} stream(s), speeds {r['speeds']}, {r.get('total_cores', 0):.3f} cores "
      f"({r.get('cpu_s_per_media_s', 0):.3f} CPU s per media s), real time {'yes' if r['ok'] else 'NO'}; "
      f"machine busy {m['busy_cores']:.2f} cores, own {m['own_cores']:.2f}, others {m['others_cores']:.2f}, steal {m['steal_pct']} %"
      + (" DISTURBED" if m["disturbed"] else ""))
sys.exit(0 if r["ok"] else 1)
PY
}

# Both sides in turn: COST_PASSES times N = 1 (the cost), then N = 2, 3 ...;
# a side stops at its first failing N.
lg_on=1 bare_on=1
for r in $(seq 1 "$reps"); do
	if [ "$paired" = 1 ]; then
		rc=0
		pair_pass "$r" || rc=$?
		[ $((rc & 1)) = 0 ] || lg_on=0
		[ $((rc & 2)) = 0 ] || bare_on=0
		continue
	fi
	pass livegate 1 "$r" || lg_on=0
	pass bare 1 "$r" || bare_on=0
done
for n in $(seq 2 "$maxn"); do
	[ $lg_on = 0 ] && [ $bare_on = 0 ] && break
	[ $lg_on = 1 ] && { pass livegate "$n" 1 || lg_on=0; }
	[ $bare_on = 1 ] && { pass bare "$n" 1 || bare_on=0; }
done

python3 - "$out" "$maxn" "$speedmin" "$machine" "$input" "$dur" "$settle" "$report" "$paired" <<'PY'
import glob, json, os, sys
out, maxn, speedmin, machine, inp, dur, settle, report, paired = sys.argv[1:10]
maxn = int(maxn)
sides = {}
def mean(vs):
    vs = [v for v in vs if v is not None]
    return round(sum(vs) / len(vs), 4) if vs else None
for side in ("livegate", "bare"):
    passes = [json.load(open(f)) for f in glob.glob(f"{out}/{side}.*/pass.json")]
    passes.sort(key=lambda p: (p["streams"], p["pass"]))
    cost = [p for p in passes if p["streams"] == 1]
    most = 0
    for n in sorted({p["streams"] for p in passes}):
        if not all(p["ok"] for p in passes if p["streams"] == n):
            break
        most = n
    sides[side] = {
        # means over the N = 1 passes
        "cpu_s_per_media_s": mean(p.get("cpu_s_per_media_s") for p in cost),
        "gateway_cpu_s_per_media_s": mean(p.get("gateway_cpu_s_per_media_s") for p in cost),
        "ffmpeg_cpu_s_per_media_s": mean(p.get("ffmpeg_cpu_s_per_media_s") for p in cost),
        "cost_passes": [p.get("cpu_s_per_media_s") for p in cost],
        "max_realtime_streams": most,
        "max_realtime_streams_bounded": most == maxn,
        "passes": passes,
    }
def ratio(a, b):
    return round(a / b, 4) if a and b else None
lg, bare = sides["livegate"], sides["bare"]
disturbed = any(p["machine"]["disturbed"] for s in sides.values() for p in s["passes"])
rep = {
    "machine": machine,
    "config": {"input": inp, "input_size": "1280x720", "window": dur, "settle_s": int(settle), "speed_min": float(speedmin),
               "paired": paired == "1",
               "max_streams": maxn, "ffmpeg_args": open(f"{out}/ffmpeg-args.txt").read().split("\n")[:-1]},
    "livegate": lg,
    "bare": bare,
    "ratio_cpu": ratio(lg["cpu_s_per_media_s"], bare["cpu_s_per_media_s"]),
    "ratio_streams": ratio(lg["max_realtime_streams"], bare["max_realtime_streams"]),
    "disturbed": disturbed,
}
json.dump(rep, open(report, "w"), indent=1)
f = lambda v, fmt="{:.3f}": "-" if v is None else fmt.format(v)
print()
print(f"{'':34s} {'livegate':>10s} {'bare ffmpeg':>12s} {'livegate/bare':>14s}")
print(f"{'CPU s per media s (N=1, ' + ('paired, ' if paired == '1' else '') + 'mean)':34s} {f(lg['cpu_s_per_media_s']):>10s} {f(bare['cpu_s_per_media_s']):>12s} {f(rep['ratio_cpu']):>14s}")
print(f"{'  of which the gateway process':34s} {f(lg['gateway_cpu_s_per_media_s']):>10s} {'':>12s}")
print(f"{'  of which ffmpeg':34s} {f(lg['ffmpeg_cpu_s_per_media_s']):>10s} {f(bare['ffmpeg_cpu_s_per_media_s']):>12s} "
      f"{f(ratio(lg['ffmpeg_cpu_s_per_media_s'], bare['ffmpeg_cpu_s_per_media_s'])):>14s}")
most = lambda s: f"{s['max_realtime_streams']}" + ("+" if s["max_realtime_streams_bounded"] else "")
print(f"{'most real-time streams (speed>=' + speedmin + ')':34s} {most(lg):>10s} {most(bare):>12s} {f(rep['ratio_streams'], '{:.2f}'):>14s}")
print("machine: " + ("DISTURBED (other processes > 0.1 core or steal > 5 % in some pass)" if disturbed else "quiet"))
PY
echo "report: $report"
