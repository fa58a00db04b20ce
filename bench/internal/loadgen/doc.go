// Package loadgen holds the pieces livegate's load and benchmark tools
// (bench/lgload, bench/lgbench, bench/chatload) share: a latency histogram, the
// publisher's WebSocket to /ingest/{stream} and the pump that feeds it from
// ffmpeg, a crowd of chat clients in one /chat/{stream} room, and the
// loopback checks every tool applies to its targets. It talks only to
// loopback addresses and bounds every loop in count and time.
package loadgen
