package transcode

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Ladder)
		field  string // substring of the error; "" means valid
	}{
		{"default", func(*Ladder) {}, ""},
		{"zero frame rate and preset mean defaults", func(l *Ladder) { l.FrameRate, l.Preset = 0, "" }, ""},
		{"one rung", func(l *Ladder) { l.Renditions = l.Renditions[2:] }, ""},
		{"no rungs", func(l *Ladder) { l.Renditions = nil }, "Renditions"},
		{"empty name", func(l *Ladder) { l.Renditions[1].Name = "" }, "Renditions[1].Name"},
		{"duplicate name", func(l *Ladder) { l.Renditions[2].Name = "720p" }, "Renditions[2].Name"},
		{"odd height", func(l *Ladder) { l.Renditions[0].Height = 721 }, "Renditions[0].Height"},
		{"zero height", func(l *Ladder) { l.Renditions[2].Height = 0 }, "Renditions[2].Height"},
		{"not highest first", func(l *Ladder) { l.Renditions[1].Height = 1080 }, "Renditions[1].Height"},
		{"equal heights", func(l *Ladder) { l.Renditions[2].Height = 480 }, "Renditions[2].Height"},
		{"zero bitrate", func(l *Ladder) { l.Renditions[0].VideoBitrate = 0 }, "Renditions[0].VideoBitrate"},
		{"maxrate below bitrate", func(l *Ladder) { l.Renditions[1].MaxRate = 999_999 }, "Renditions[1].MaxRate"},
		{"zero bufsize", func(l *Ladder) { l.Renditions[2].BufSize = 0 }, "Renditions[2].BufSize"},
		{"zero audio", func(l *Ladder) { l.AudioBitrate = 0 }, "AudioBitrate"},
		{"negative frame rate", func(l *Ladder) { l.FrameRate = -1 }, "FrameRate"},
		{"huge frame rate", func(l *Ladder) { l.FrameRate = 1000 }, "FrameRate"},
		{"unknown preset", func(l *Ladder) { l.Preset = "quick" }, "Preset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultLadder()
			tt.change(&l)
			err := l.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error naming %s", tt.field)
			case tt.field != "" && !strings.Contains(err.Error(), tt.field+" ") && !strings.Contains(err.Error(), tt.field+":"):
				t.Fatalf("Validate() = %v, want it to name %s", err, tt.field)
			}
		})
	}
}

func TestDefaultLadder(t *testing.T) {
	l := DefaultLadder()
	var names []string
	for _, r := range l.Renditions {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "720p,480p,360p" {
		t.Errorf("renditions %s, want 720p,480p,360p", got)
	}
	if l.AudioBitrate != 128_000 || l.FrameRate != 30 || l.Preset != "veryfast" {
		t.Errorf("audio %d, fps %d, preset %q", l.AudioBitrate, l.FrameRate, l.Preset)
	}
}
