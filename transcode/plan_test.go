package transcode

import (
	"fmt"
	"strings"
	"testing"
)

// sizes renders a plan as "name WxH, ...".
func sizes(outs []Output) string {
	var s []string
	for _, o := range outs {
		s = append(s, fmt.Sprintf("%s %dx%d", o.Name, o.Width, o.Height))
	}
	return strings.Join(s, ", ")
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name       string
		srcW, srcH int
		want       string
	}{
		{"720p landscape", 1280, 720, "720p 1280x720, 480p 854x480, 360p 640x360"},
		{"1080p gets no upscale rung", 1920, 1080, "720p 1280x720, 480p 854x480, 360p 640x360"},
		{"4:3 480p", 640, 480, "480p 640x480, 360p 480x360"},
		{"portrait", 720, 1280, "720p 720x1280, 480p 480x854, 360p 360x640"},
		{"portrait 4K crop", 1216, 2160, "720p 720x1278, 480p 480x852, 360p 360x640"},
		{"square", 1000, 1000, "720p 720x720, 480p 480x480, 360p 360x360"},
		{"just below 720", 1278, 718, "480p 854x480, 360p 640x360"},
		{"odd sizes", 641, 361, "360p 640x360"},
		{"smaller than lowest rung", 320, 240, "240p 320x240"},
		{"small odd portrait", 181, 321, "180p 180x320"},
		{"tiny", 1, 1, "2p 2x2"},
		{"extreme aspect is clamped", 4000, 400, "360p 1440x360"},
		{"unknown", 0, 0, "720p 1280x720, 480p 854x480, 360p 640x360"},
		{"half unknown", 1280, 0, "720p 1280x720, 480p 854x480, 360p 640x360"},
		{"negative", -5, 720, "720p 1280x720, 480p 854x480, 360p 640x360"},
	}
	l := DefaultLadder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outs := l.Plan(tt.srcW, tt.srcH)
			if got := sizes(outs); got != tt.want {
				t.Fatalf("Plan(%d, %d) = %s, want %s", tt.srcW, tt.srcH, got, tt.want)
			}
			for _, o := range outs {
				if o.Width%2 != 0 || o.Height%2 != 0 || o.Width <= 0 || o.Height <= 0 {
					t.Errorf("%s: %dx%d is not even and positive", o.Name, o.Width, o.Height)
				}
				if o.Rendition.Height != min(o.Width, o.Height) {
					t.Errorf("%s: rung height %d is not the short side of %dx%d", o.Name, o.Rendition.Height, o.Width, o.Height)
				}
				if o.VideoBitrate == 0 || o.MaxRate == 0 || o.BufSize == 0 {
					t.Errorf("%s: rates missing: %+v", o.Name, o.Rendition)
				}
			}
		})
	}
	if outs := (Ladder{}).Plan(1280, 720); outs != nil {
		t.Errorf("empty ladder: Plan = %v, want nil", outs)
	}
}

func TestLevel(t *testing.T) {
	tests := []struct {
		w, h, fps, maxRate int
		high               bool
		want               string
	}{
		{640, 360, 30, 642_000, false, "3.0"},
		{854, 480, 30, 1_070_000, false, "3.1"}, // 1620 MBs * 30 > 40500 MB/s
		{1280, 720, 30, 2_675_000, true, "3.1"},
		{720, 1280, 30, 2_675_000, true, "3.1"},
		{1280, 720, 60, 2_675_000, true, "3.2"},
		{1920, 1080, 30, 6_000_000, true, "4.0"},
		{1280, 720, 30, 30_000_000, true, "4.1"},
		{200, 16000, 30, 1_000_000, false, ""},
	}
	for _, tt := range tests {
		if got := level(tt.w, tt.h, tt.fps, tt.maxRate, tt.high); got != tt.want {
			t.Errorf("level(%d, %d, %d, %d, %v) = %q, want %q", tt.w, tt.h, tt.fps, tt.maxRate, tt.high, got, tt.want)
		}
	}
}
