//go:build linux

// Package bench holds the benchmark scripts; its tests run short smoke
// passes of them (each must run and produce its report), never timed
// assertions: the figures go in BENCHMARKS.md.
package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTranscodeSmoke runs bench/transcode.sh --smoke (the real gateway, its
// ffmpeg and the bare ffmpeg command, one stream each for a few seconds) and
// checks that the report holds both sides' figures.
func TestTranscodeSmoke(t *testing.T) {
	dir := smoke(t, "transcode.sh", []string{"ffmpeg", "python3", "curl"})
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	type side struct {
		CPU     *float64 `json:"cpu_s_per_media_s"`
		FFmpeg  *float64 `json:"ffmpeg_cpu_s_per_media_s"`
		Streams *int     `json:"max_realtime_streams"`
		Passes  []struct {
			Streams int       `json:"streams"`
			Speeds  []float64 `json:"speeds"`
			Machine *struct {
				Busy  float64 `json:"busy_cores"`
				Steal float64 `json:"steal_pct"`
			} `json:"machine"`
		} `json:"passes"`
	}
	var rep struct {
		Machine  string `json:"machine"`
		Livegate side   `json:"livegate"`
		Bare     side   `json:"bare"`
		Config   struct {
			FFmpegArgs []string `json:"ffmpeg_args"`
		} `json:"config"`
		Disturbed *bool `json:"disturbed"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if rep.Machine == "" || rep.Disturbed == nil || !strings.Contains(strings.Join(rep.Config.FFmpegArgs, " "), "-c:v libx264") {
		t.Errorf("report: no machine, disturbed flag or ffmpeg arguments:\n%s", b)
	}
	for name, s := range map[string]side{"livegate": rep.Livegate, "bare": rep.Bare} {
		// Speeds and CPU are figures of the machine's load, not pass marks;
		// only their presence is checked.
		if s.CPU == nil || *s.CPU <= 0 || s.FFmpeg == nil || s.Streams == nil {
			t.Errorf("%s: missing cost or stream count in the report:\n%s", name, b)
		}
		if len(s.Passes) != 1 || s.Passes[0].Streams != 1 || len(s.Passes[0].Speeds) != 1 || s.Passes[0].Machine == nil {
			t.Errorf("%s: want one pass of one stream with its speed and machine load:\n%s", name, b)
		}
	}
}
