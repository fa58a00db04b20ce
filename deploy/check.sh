#!/usr/bin/env bash
# Validates the deploy files with what runs without Docker: nginx -t on both
# nginx configs (with locations.conf and collapse.conf), alone and with the
# TLS server of tls.conf (gateway host names mapped to loopback, a
# throwaway certificate), the systemd unit with systemd-analyze if present,
# compose.yaml and the Kubernetes manifests decoded strictly (go test
# ./deploy -run 'TestCompose|TestManifests': unknown or misspelt fields
# fail), and the Dockerfile's build steps (go build as the image does).
# The edge itself (nginx in front of a gateway with players) is tested by
# go test ./deploy -run TestEdge.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/livegate" "$tmp/cache"
cp nginx/locations.conf "$tmp/livegate/"
sed -e "s|/var/cache/nginx/livegate|$tmp/cache|; s|/run/nginx-livegate-collapse.sock|$tmp/collapse.sock|" \
  nginx/collapse.conf > "$tmp/livegate/collapse.conf"
# a throwaway self-signed certificate for tls.conf
(cd "$tmp" && go run "$(go env GOROOT)/src/crypto/tls/generate_cert.go" --host live.example.com >/dev/null 2>&1) \
  || { echo "nginx/tls.conf: could not make a test certificate" >&2; exit 1; }
sed -e "s|/etc/nginx/livegate/|$tmp/livegate/|; s|/etc/letsencrypt/live/live.example.com/fullchain.pem|$tmp/cert.pem|; s|/etc/letsencrypt/live/live.example.com/privkey.pem|$tmp/key.pem|; s|/var/www/letsencrypt|$tmp/www|" \
  nginx/tls.conf > "$tmp/tls.conf"
for conf in single compose single+tls compose+tls; do
  base=${conf%+tls}
  sed -e "s|/etc/nginx/livegate/|$tmp/livegate/|; s|/var/cache/nginx/livegate|$tmp/cache|; s|gateway1:8080|127.0.0.1:8081|; s|gateway2:8080|127.0.0.1:8082|; s|gateway3:8080|127.0.0.1:8083|" \
    "nginx/$base.conf" > "$tmp/$base.conf"
  includes="include $tmp/$base.conf;" label="nginx/$base.conf"
  if [[ $conf == *+tls ]]; then includes+=" include $tmp/tls.conf;" label+=" + nginx/tls.conf"; fi
  cat > "$tmp/nginx-$conf.conf" <<EOC
pid $tmp/nginx.pid;
error_log stderr;
events {}
http { access_log off; $includes }
EOC
  nginx -t -q -c "$tmp/nginx-$conf.conf" -p "$tmp" 2>&1 | grep -v "could not open error log" || true
  nginx -t -q -c "$tmp/nginx-$conf.conf" -p "$tmp" 2>/dev/null || { echo "$label: invalid" >&2; exit 1; }
  echo "$label: ok"
done
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify livegate.service 2>&1 | grep -v "not found\|Command /usr/local/bin/livegate" || true
fi
python3 -c 'import sys,json; import yaml' 2>/dev/null && python3 -c 'import yaml; yaml.safe_load(open("compose.yaml"))' && echo "compose.yaml: ok (yaml)" || echo "compose.yaml: not checked as YAML by python (no python yaml)"
go test -count=1 -run 'TestCompose|TestManifests' . >"$tmp/gotest.log" 2>&1 \
  || { cat "$tmp/gotest.log" >&2; echo "compose.yaml or k8s/: invalid" >&2; exit 1; }
echo "compose.yaml, k8s/*.yaml: ok (strict)"
(cd .. && CGO_ENABLED=0 go build -trimpath -o "$tmp/livegate" ./cmd/livegate) && echo "Dockerfile build step: ok"
