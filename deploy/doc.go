// Package deploy holds livegate's deployment files (Dockerfile, systemd
// unit, nginx edge configs, compose file, Kubernetes manifests, Grafana
// dashboard) and the tests that check them against real programs: nginx
// in front of a gateway with LL-HLS players, the manifests decoded
// strictly into the Kubernetes API types, the dashboard's queries against
// a real gateway's /metrics. It has no code of its own.
package deploy
