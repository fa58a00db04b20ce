#!/usr/bin/env bash
# bench/pipeline.sh: livegate's media pipeline measured with bench/lgbench,
# next to ffmpeg's own HLS muxer served as files.
#
#   bench/pipeline.sh                 full run: 30 s passes (the watch page; a
#                                     default hls.js page on another origin;
#                                     ffmpeg-hls reference), vp8 startup pass
#   bench/pipeline.sh --smoke         12 s, watch page only, one 360p
#                                     ultrafast rendition, no reference, no
#                                     extra startup pass
#                                     (finishes in under 60 s)
#   bench/pipeline.sh --json F        also write the report to F
#   bench/pipeline.sh -- -codec vp8   pass further flags to lgbench
#
# It builds lgbench and the gateway into OUT_DIR (a new temporary directory
# unless set), then runs lgbench, which starts the gateway on a free
# 127.0.0.1 port, publishes an ffmpeg test pattern over the ingest
# WebSocket, follows the 720p low-latency playlist, watches /watch/{stream}
# in headless Chromium (skipped when chromium is missing), samples the
# gateway's and its ffmpeg's CPU from /proc, and kills all it started.
# Environment: DURATION (30s full, 12s smoke), OUT_DIR, REPORT
# (OUT_DIR/pipeline.json).
set -euo pipefail

cd "$(dirname "$0")/.."

smoke=0
report=${REPORT:-}
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) smoke=1 ;;
	--json)
		report=${2:?--json needs a file}
		shift
		;;
	--)
		shift
		extra=("$@")
		break
		;;
	-h | --help)
		sed -n '2,24p' "$0"
		exit 0
		;;
	*)
		echo "pipeline.sh: unknown argument $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done

for tool in go ffmpeg; do
	command -v "$tool" >/dev/null || {
		echo "pipeline.sh: $tool not found" >&2
		exit 1
	}
done

out=${OUT_DIR:-$(mktemp -d -t lgbench-XXXXXX)}
mkdir -p "$out"
report=${report:-$out/pipeline.json}

go build -o "$out/lgbench" ./bench/lgbench
go build -o "$out/livegate" ./cmd/livegate

args=(-gateway "$out/livegate" -json "$report")
if ! command -v chromium >/dev/null; then
	echo "pipeline.sh: chromium not found: no player measurement" >&2
	args+=(-skip-browser)
fi
if [ "$smoke" = 1 ]; then
	args+=(-duration "${DURATION:-12s}" -skip-reference -skip-external -startup-codecs "")
	# one light rendition, so that the transcoder keeps real time on a busy
	# machine and the short pass has listings and a player to measure
	if [[ " ${extra[*]} " != *" -config "* ]]; then
		echo '{"ladder":[{"name":"360p","height":360,"video_kbps":600,"maxrate_kbps":642,"bufsize_kbits":1200}],"x264_preset":"ultrafast"}' >"$out/smoke.json"
		args+=(-config "$out/smoke.json")
	fi
	limit=50
else
	args+=(-duration "${DURATION:-30s}")
	limit=600
fi

# lgbench bounds every phase itself; the timeout is a last resort.
timeout --kill-after=5 "$limit" "$out/lgbench" "${args[@]}" "${extra[@]}"
echo "report: $report" >&2
