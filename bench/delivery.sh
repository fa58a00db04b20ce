#!/usr/bin/env bash
# bench/delivery.sh: requests/s, MB/s, latency and server CPU per request of
# many concurrent viewers of ONE stream's files: livegate against nginx
# (Debian) serving the same files from disk, with the same client.
#
#   bench/delivery.sh                 the ended window, recording off (default)
#   bench/delivery.sh --recording     a finished recording, recording on (--data)
#   bench/delivery.sh --live          the live window's segments and parts
#   bench/delivery.sh --private       a recording served publicly and privately
#   bench/delivery.sh --all           the four, one after the other (private
#                                     before live, whose transcoder would share the machine)
#   bench/delivery.sh --smoke         the four, 20 clients, one 3 s pass each
#
# Modes (several flags run several modes):
# - ended: a gateway without a data directory (keep_ended 10m,
#   hls_segment_count 20) gets one lgload publisher for about 20 s; when it
#   ends, the gateway holds the last window (#EXT-X-ENDLIST) in memory, with
#   no transcoder running. Files: the first media playlist's init section
#   and segments.
# - recording: a gateway with --data (recording on, the normal deployment;
#   keep_ended 1s) gets the same publisher; once the stream has ended and
#   the window is dropped, /live/deliv0/ serves the finished recording from
#   disk (record.Recording.ServeFile). Files: the init section and every
#   segment of the recording's first media playlist, at the URLs its
#   multivariant playlist gives.
# - live: the recording gateway gets a publisher that keeps running; before
#   each pass, the init section and the 5 newest segments of the live media
#   playlist (they stay in the 20-segment window for the pass), and
#   separately the parts it lists (low-latency HLS), are fetched: two
#   measures, live-segments and live-parts. The transcoder shares the
#   machine (its CPU is not counted as the gateway's).
# - private: what a token costs. The recording mode's finished recording
#   (made first if that mode did not run) is copied into a data directory
#   that two new gateways share, both with the same token_secret: "public",
#   and "private", whose private_streams matches the stream's name. The
#   same files as in recording mode are fetched from public without a
#   token, from private (livegate-private) with ?token= on every URL (a
#   view token minted by `livegate token`), and from nginx; the passes
#   alternate which gateway goes first. The figures add private/public, the
#   ratio of the two gateways' medians, and each pass's.
# Each mode's files are fetched over HTTP into an nginx root (the same
# relative paths); nginx runs from a minimal config in a temporary directory
# (2 workers like the gateway's 2 cores, sendfile on, access log off,
# keep-alive without a request limit). The same client, lgload -bench-get,
# fetches the file list round-robin with the same concurrency and
# keep-alive, alternately: livegate, nginx, livegate, nginx (PASSES pairs).
# Each mode ends with the median of each figure per server, the ratio of
# the medians, and each pass's ratio. The load average and the CPU the
# other processes on the machine used are printed with every pass.
#
# Environment: CONCURRENCY (100; smoke 20), DURATION (per pass, 15s; smoke
# 3s), PASSES (2; smoke 1), OUT_DIR (a new temporary directory), REPORT
# (OUT_DIR/delivery.json), GATEWAY (a prebuilt gateway binary instead of
# building ./cmd/livegate).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0 modes=()
for arg in "$@"; do
	case $arg in
	--smoke) smoke=1 ;;
	--recording) modes+=(recording) ;;
	--live) modes+=(live) ;;
	--ended) modes+=(ended) ;;
	--private) modes+=(private) ;;
	--all) modes+=(ended recording private live) ;;
	-h | --help) sed -n '2,54p' "$0"; exit 0 ;;
	*) echo "delivery.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
	esac
done
if [ ${#modes[@]} = 0 ]; then
	if [ $smoke = 1 ]; then modes=(ended recording private live); else modes=(ended); fi
fi
for tool in go ffmpeg python3 curl nginx; do
	command -v "$tool" >/dev/null || { echo "delivery.sh: $tool not found" >&2; exit 1; }
done
conc=${CONCURRENCY:-100}
dur=${DURATION:-15s}
passes=${PASSES:-2}
pubdur=20s
if [ $smoke = 1 ]; then conc=${CONCURRENCY:-20}; dur=${DURATION:-3s}; passes=${PASSES:-1}; pubdur=6s; fi
out=${OUT_DIR:-$(mktemp -d -t lgdelivery-XXXXXX)}
report=${REPORT:-$out/delivery.json}
mkdir -p "$out"
if [ -n "${GATEWAY:-}" ]; then cp "$GATEWAY" "$out/livegate"; else go build -o "$out/livegate" ./cmd/livegate; fi
go build -o "$out/lgload" ./bench/lgload

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "modes: ${modes[*]}; $conc clients, $passes pass(es) of $dur per server"

# nginx, one for every mode, on the files under $root
root="$out/www"
nport=$(free_port)
mkdir -p "$root"
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
	types { video/mp4 mp4; application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
	server {
		listen 127.0.0.1:$nport;
		root $root;
	}
}
NGINX
nginx -c "$out/nginx.conf" -p "$out" &
ng_pid=$!
pids+=("$ng_pid")

# gateway NAME [FLAGS...] starts a gateway with $out/NAME.json as config
# and sets gw_pid and gw_url.
gateway() {
	local name=$1 port
	shift
	port=$(free_port)
	"$out/livegate" --listen "127.0.0.1:$port" --config "$out/$name.json" "$@" >"$out/$name.log" 2>&1 &
	gw_pid=$!
	pids+=("$gw_pid")
	gw_url="http://127.0.0.1:$port"
	for _ in $(seq 100); do curl -sf "$gw_url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
	curl -sf "$gw_url/healthz" >/dev/null || { echo "delivery.sh: gateway $name did not start:" >&2; cat "$out/$name.log" >&2; exit 1; }
}

# snapshot MODE BASE DIR FILE... fetches BASE/DIR/FILE for each FILE into
# the nginx root under MODE/DIR, and writes the two URL lists of MODE.
snapshot() {
	local mode=$1 base=$2 dir=$3 f
	shift 3
	mkdir -p "$out/$mode" "$root/$mode/$dir"
	: >"$out/$mode/livegate.urls"
	: >"$out/$mode/nginx.urls"
	for f in "$@"; do
		curl -sf "$base/$dir/$f" -o "$root/$mode/$dir/$f" || { echo "delivery.sh: $mode: cannot fetch $base/$dir/$f" >&2; exit 1; }
		echo "$base/$dir/$f" >>"$out/$mode/livegate.urls"
		echo "http://127.0.0.1:$nport/$mode/$dir/$f" >>"$out/$mode/nginx.urls"
	done
	for _ in $(seq 50); do curl -sf "$(head -1 "$out/$mode/nginx.urls")" -o /dev/null && break; sleep 0.1; done
	echo "$mode: $# files, $(du -sk "$root/$mode/$dir" | cut -f1) KB"
}

# cpu PID... prints the CPU ticks of the pids and (unless children=0)
# their children.
cpu() {
	local t=0 p
	for p in "$@" $([ $children = 1 ] && pgrep -P "$(echo "$@" | tr ' ' ',')" || true); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# busy prints the machine's busy CPU ticks (all but idle and iowait).
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# run MODE SERVER PID CHILDREN: one pass of lgload on MODE's URL list of
# SERVER; the figures go to $out/MODE/SERVER.$pass.json, with the server's
# CPU (its children's too when CHILDREN is 1).
run() {
	local mode=$1 name=$2 pid=$3 children=$4 c0 c1 b0 b1
	c0=$(cpu "$pid")
	b0=$(busy)
	"$out/lgload" -bench-get "$out/$mode/$name.urls" -concurrency "$conc" -duration "$dur" \
		-json "$out/$mode/$name.$pass.json" | sed "s/^/$mode pass $pass $name: /"
	c1=$(cpu "$pid")
	b1=$(busy)
	python3 - "$out/$mode/$name.$pass.json" "$c0" "$c1" "$b0" "$b1" "$(getconf CLK_TCK)" "$(cut -d' ' -f1 /proc/loadavg)" "$mode pass $pass $name" <<'PY'
import json, sys
path, label = sys.argv[1], sys.argv[8]
c0, c1, b0, b1, hz = map(int, sys.argv[2:7])
load = float(sys.argv[7])
r = json.load(open(path))
secs = r["seconds"]
r["server_cores"] = round((c1 - c0) / hz / secs, 3)
r["server_us_per_request"] = round(r["server_cores"] / r["requests_per_s"] * 1e6, 1) if r["requests_per_s"] else 0
r["others_cores"] = round(max(0, (b1 - b0) / hz / secs - r["server_cores"] - r["lgload_cpu"]), 2)
r["load_average"] = load
json.dump(r, open(path, "w"))
print(f"{label}: server CPU {r['server_cores']:.2f} cores, {r['server_us_per_request']:.0f} µs per request; "
      f"other processes {r['others_cores']:.2f} cores, load average {load}")
PY
}

# pair MODE: one pass of livegate, then nginx (its workers are its
# children); the gateway's children count unless gw_children=0 (the
# transcoder of a live stream).
gw_children=1
pair() {
	run "$1" livegate "$gw_pid" "$gw_children"
	run "$1" nginx "$ng_pid" 1
}

# media_files PLAYLIST prints the init section and segments it names.
media_files() {
	(grep -o '#EXT-X-MAP:URI="[^"]*"' "$1" | sed 's/.*URI="//; s/"$//'; grep -v '^#' "$1") | grep -v gap | awk 'NF && !seen[$0]++'
}

# ended_stream BASE waits until the stream under BASE has ended and its
# first media playlist carries #EXT-X-ENDLIST; sets media (its URI).
ended_stream() {
	local base=$1
	media=$(curl -sf "$base/index.m3u8" | grep -v '^#' | grep . | head -1 || true)
	media=${media:-720p/video1_stream.m3u8}
	for _ in $(seq 120); do # the stream ends once the transcoder has caught up with what was sent
		curl -sf "$base/$media" >"$out/media.m3u8" || true
		grep -q EXT-X-ENDLIST "$out/media.m3u8" && return
		sleep 0.5
	done
	echo "delivery.sh: $base/$media not ended after 60 s" >&2
	exit 1
}

# recorded BASE STREAM waits until the stream under BASE, ended, is served
# from its finished recording (the window dropped after keep_ended: the
# multivariant playlist is the recording's own); sets media (the URI of
# its first media playlist) and writes that playlist to $out/media.m3u8.
recorded() {
	local base=$1 stream=$2
	for _ in $(seq 120); do
		curl -sf "${base%/live/*}/api/streams/$stream" | grep -q '"recording":true' &&
			curl -sf "$base/index.m3u8" >"$out/index.m3u8" && ! grep -q recording.d/ "$out/index.m3u8" && break
		sleep 0.5
	done
	media=$(grep -v '^#' "$out/index.m3u8" | grep . | head -1)
	curl -sf "$base/$media" >"$out/media.m3u8"
	grep -q 'PLAYLIST-TYPE:VOD' "$out/media.m3u8" || { echo "delivery.sh: $base/$media is not the recording" >&2; exit 1; }
}

publish() { # publish GATEWAY_URL PREFIX DURATION
	"$out/lgload" -url "$1" -prefix "$2" -publishers 1 -viewers 0 -duration "$3" >"$out/publish-$2.txt" 2>"$out/publish-$2.progress"
}

# recording_gateway starts, once, a gateway with --data (recording on, the
# normal deployment; keep_ended 1s); sets rec_pid and rec_url.
recording_gateway() {
	[ -n "${rec_pid:-}" ] && return
	echo '{"keep_ended": "1s", "hls_segment_count": 20}' >"$out/recording.json"
	gateway recording --data "$out/data"
	rec_pid=$gw_pid rec_url=$gw_url
}

# recorded_stream makes, once, the finished recording rec0: the recording
# gateway gets one publisher; once the stream has ended and the window is
# dropped, /live/rec0/ serves the recording from disk. Sets rec_base and
# rec_media (the URI of its first media playlist, in $out/rec-media.m3u8).
recorded_stream() {
	[ -n "${rec_media:-}" ] && return
	recording_gateway
	publish "$rec_url" rec "$pubdur"
	rec_base="$rec_url/live/rec0"
	ended_stream "$rec_base"
	recorded "$rec_base" rec0
	rec_media=$media
	cp "$out/media.m3u8" "$out/rec-media.m3u8"
}

for mode in "${modes[@]}"; do
	echo "== $mode (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	case $mode in
	ended)
		echo '{"keep_ended": "10m", "hls_segment_count": 20, "record": false}' >"$out/ended.json"
		gateway ended
		gw_children=1
		publish "$gw_url" ended "$pubdur"
		base="$gw_url/live/ended0"
		ended_stream "$base"
		# shellcheck disable=SC2046
		snapshot ended "$base" "$(dirname "$media")" $(media_files "$out/media.m3u8")
		for pass in $(seq "$passes"); do pair ended; done
		;;
	recording)
		recorded_stream
		gw_pid=$rec_pid gw_children=1
		# shellcheck disable=SC2046
		snapshot recording "$rec_base" "$(dirname "$rec_media")" $(media_files "$out/rec-media.m3u8")
		for pass in $(seq "$passes"); do pair recording; done
		;;
	live)
		recording_gateway
		gw_pid=$rec_pid gw_url=$rec_url
		gw_children=0 # the gateway's child is the transcoder
		secs=${dur%s}
		"$out/lgload" -url "$gw_url" -prefix live -publishers 1 -viewers 0 \
			-duration "$((passes * (4 * secs + 20) + 120))s" >"$out/publish-live.txt" 2>"$out/publish-live.progress" &
		pids+=($!)
		base="$gw_url/live/live0"
		for pass in $(seq "$passes"); do
			for _ in $(seq 240); do # until the window holds 6 segments (a loaded machine transcodes slowly)
				curl -sf "$base/720p/video1_stream.m3u8" >"$out/media.m3u8" 2>/dev/null &&
					[ "$(grep -c '^[^#].*seg' "$out/media.m3u8")" -ge 6 ] && break
				sleep 0.5
			done
			[ "$(grep -c '^[^#].*seg' "$out/media.m3u8")" -ge 6 ] || { echo "delivery.sh: the live window has fewer than 6 segments after 120 s" >&2; exit 1; }
			# shellcheck disable=SC2046
			snapshot live-segments "$base" 720p $(grep -o '#EXT-X-MAP:URI="[^"]*"' "$out/media.m3u8" | sed 's/.*URI="//; s/"$//') \
				$(grep '^[^#].*seg' "$out/media.m3u8" | tail -5)
			pair live-segments
			# parts leave the gateway a few segments after they are listed:
			# the newest, right before their pass
			curl -sf "$base/720p/video1_stream.m3u8" >"$out/media.m3u8"
			# shellcheck disable=SC2046
			snapshot live-parts "$base" 720p $(grep -o '#EXT-X-PART:[^ ]*URI="[^"]*"' "$out/media.m3u8" | sed 's/.*URI="//; s/"$//')
			pair live-parts
		done
		echo "live: publisher + transcoder (ffmpeg, a child of the gateway, not counted) shared the machine"
		;;
	private)
		recorded_stream
		[ -d "$out/data/recordings/rec0" ] || { echo "delivery.sh: private: no $out/data/recordings/rec0" >&2; exit 1; }
		mkdir -p "$out/private-data/recordings"
		cp -r "$out/data/recordings/rec0" "$out/private-data/recordings/"
		secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
		conf='"keep_ended": "1s", "hls_segment_count": 20, "token_secret": "'$secret'"'
		echo "{$conf}" >"$out/public.json"
		echo "{$conf, \"private_streams\": [\"rec*\"]}" >"$out/private.json"
		gateway public --data "$out/private-data"
		pub_pid=$gw_pid pub_url=$gw_url
		gateway private --data "$out/private-data"
		priv_pid=$gw_pid priv_url=$gw_url
		token=$("$out/livegate" token --config "$out/private.json" --stream rec0 --role view --ttl 24h)
		base="$pub_url/live/rec0"
		recorded "$base" rec0
		# shellcheck disable=SC2046
		snapshot private "$base" "$(dirname "$media")" $(media_files "$out/media.m3u8")
		sed "s|^$pub_url/|$priv_url/|; s|\$|?token=$token|" "$out/private/livegate.urls" >"$out/private/livegate-private.urls"
		# the private gateway refuses the files without the token, and
		# serves the same bytes with it
		code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$priv_url/live/rec0/$media")
		[ "$code" = 401 ] || { echo "delivery.sh: private: $priv_url/live/rec0/$media without a token: $code, want 401" >&2; exit 1; }
		while read -r u; do
			f=${u#"$priv_url/live/rec0/"}
			curl -sf -m 10 "$u" | cmp -s - "$root/private/${f%%\?*}" || { echo "delivery.sh: private: ${u%%\?*}?token=... differs from the public file" >&2; exit 1; }
		done <"$out/private/livegate-private.urls"
		for pass in $(seq "$passes"); do
			if [ $((pass % 2)) = 1 ]; then
				run private livegate "$pub_pid" 1
				run private livegate-private "$priv_pid" 1
			else
				run private livegate-private "$priv_pid" 1
				run private livegate "$pub_pid" 1
			fi
			run private nginx "$ng_pid" 1
		done
		echo "private: one recording (one data directory) through two gateways; livegate is public, livegate-private needs the token"
		;;
	esac
done

# the summary: medians per server, their ratio, and each pass's ratio
modes_done=()
for m in "${modes[@]}"; do
	if [ "$m" = live ]; then modes_done+=(live-segments live-parts); else modes_done+=("$m"); fi
done
python3 - "$out" "$passes" "$report" "${modes_done[@]}" <<'PY'
import json, os, statistics, sys
out, passes, report, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
figures = (("requests_per_s", "req/s"), ("mb_per_s", "MB/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
           ("server_us_per_request", "CPU µs/req"))
summary, failed = {}, False
for mode in modes:
    # the private mode has a third server, the gateway that needs a token
    private = os.path.exists(f"{out}/{mode}/livegate-private.1.json")
    servers = ("livegate", "nginx") + (("livegate-private",) if private else ())
    rs = {s: [json.load(open(f"{out}/{mode}/{s}.{p}.json")) for p in range(1, passes + 1)] for s in servers}
    m = {s: {} for s in servers}
    m["livegate/nginx"] = {}
    if private:
        m["private/public"] = {}
    print(f"{mode}: medians of {passes} pass(es)")
    for k, label in figures:
        a, b = (statistics.median(r[k] for r in rs[s]) for s in ("livegate", "nginx"))
        m["livegate"][k], m["nginx"][k] = a, b
        m["livegate/nginx"][k] = round(a / b, 3) if b else None
        line = f"  {label:11s} livegate {a:10.1f}  nginx {b:10.1f}  livegate/nginx {a / b if b else float('nan'):.2f}"
        if private:
            p = m["livegate-private"][k] = statistics.median(r[k] for r in rs["livegate-private"])
            m["private/public"][k] = round(p / a, 3) if a else None
            line += f"  private {p:10.1f}  private/public {p / a if a else float('nan'):.3f}"
        print(line)
    ratios = lambda x, y: [round(l["requests_per_s"] / n["requests_per_s"], 3) if n["requests_per_s"] else None
                           for l, n in zip(rs[x], rs[y])]
    per = m["pass_ratios"] = ratios("livegate", "nginx")
    m["others_cores"] = [r["others_cores"] for s in rs for r in rs[s]]
    m["load_average"] = [r["load_average"] for s in rs for r in rs[s]]
    print(f"  req/s livegate/nginx per pass: {' '.join(str(x) for x in per)}; errors: "
          + ", ".join(f"{s} {sum(r['errors'] for r in rs[s])}" for s in servers)
          + f"; load average {min(m['load_average'])}-{max(m['load_average'])}")
    if private:
        pp = m["private_pass_ratios"] = ratios("livegate-private", "livegate")
        print(f"  req/s private/public per pass: {' '.join(str(x) for x in pp)}")
    summary[mode] = m
    failed = failed or any(r["errors"] or not r["requests"] for s in rs for r in rs[s])
json.dump({"passes": passes, "modes": summary}, open(report, "w"), indent=1)
if failed:
    sys.exit("delivery.sh: a server failed requests (see bench-get's last error above): its figures mean nothing")
PY
echo "reports in $out ($report)"
