#!/usr/bin/env bash
# deploy/loadtest/run.sh: load a livegate deployment on this machine with a
# scenario of bench/lgload (publishers, HLS viewers, chat clients), print the
# summary and save the JSON report.
#
#   deploy/loadtest/run.sh SCENARIO [LGLOAD FLAGS...]
#   deploy/loadtest/run.sh --list
#
# SCENARIO is a name in deploy/loadtest/scenarios (small, medium,
# chat-heavy) or the path of a file of lgload flags, one or more a line,
# '#' comments. Flags given after it are passed on and win over the file's
# (e.g. -duration 10s). The streams are PREFIX0..N-1 (-prefix, "load").
# Progress goes to stderr, the summary to stdout and OUT_DIR/SCENARIO.txt.
#
# Environment: URL (http://127.0.0.1:8080; lgload refuses any host that is
# not loopback), GATEWAY_PID (the gateway's pid: its CPU and memory are
# reported), DURATION (overrides the scenario's -duration), OUT_DIR (a new
# temporary directory), REPORT (OUT_DIR/SCENARIO.json), LGLOAD (an lgload
# binary; otherwise ./bench/lgload is built into OUT_DIR), LIVEGATE_PUBLISH_KEY
# (the publish key, when the gateway requires one; lgload reads it itself).
# lgload bounds every phase itself; the timeout here is a last resort.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

case "${1:-}" in
"")
	sed -n '2,21p' "$0" >&2
	exit 2
	;;
-h | --help)
	sed -n '2,21p' "$0"
	exit 0
	;;
--list)
	for f in "$here"/scenarios/*.flags; do
		printf '%-12s %s\n' "$(basename "$f" .flags)" "$(sed -n '1s/^# *//p' "$f")"
	done
	exit 0
	;;
esac

scenario=$1
shift
file=$scenario
[ -f "$file" ] || file=$here/scenarios/$scenario.flags
if [ ! -f "$file" ]; then
	echo "run.sh: no scenario $scenario (try --list)" >&2
	exit 2
fi
name=$(basename "$file" .flags)

# The file's words, comments removed; never run through a shell.
args=()
while read -r line; do
	line=${line%%#*}
	read -ra words <<<"$line"
	args+=("${words[@]}")
done <"$file"

url=${URL:-http://127.0.0.1:8080}
out=${OUT_DIR:-$(mktemp -d -t lgloadtest-XXXXXX)}
mkdir -p "$out"
report=${REPORT:-$out/$name.json}
lgload=${LGLOAD:-}
if [ -z "$lgload" ]; then
	lgload=$out/lgload
	(cd "$root" && go build -o "$lgload" ./bench/lgload)
fi

args+=(-url "$url" -json "$report")
[ -n "${GATEWAY_PID:-}" ] && args+=(-gateway-pid "$GATEWAY_PID")
[ -n "${DURATION:-}" ] && args+=(-duration "$DURATION")
args+=("$@")

echo "run.sh: scenario $name against $url: lgload ${args[*]}" >&2
rc=0
timeout --kill-after=10 3h "$lgload" "${args[@]}" | tee "$out/$name.txt" || rc=$?
if [ "$rc" != 0 ]; then
	echo "run.sh: lgload failed (exit $rc)" >&2
	exit "$rc"
fi
echo "report: $report" >&2
