// Package transcode turns one publisher's media into an adaptive-bitrate
// H.264 ladder: it plans the renditions for a source size, builds the ffmpeg
// argument list that encodes them into one MPEG-TS stream, and supervises the
// ffmpeg process.
package transcode

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Rendition is one rung of the ladder, sized by the source's short side.
type Rendition struct {
	Name         string // e.g. "720p"
	Height       int    // short side in pixels, e.g. 720; even
	VideoBitrate int    // target bits per second
	MaxRate      int    // VBV maximum rate, bits per second; at least VideoBitrate
	BufSize      int    // VBV buffer size, bits
}

// Ladder is the set of renditions and shared encoder settings.
type Ladder struct {
	Renditions   []Rendition // highest first, short sides strictly decreasing
	AudioBitrate int         // AAC bits per second
	FrameRate    int         // fixed output frame rate; 0 means 30
	Preset       string      // x264 preset; "" means "veryfast"
	// FirstSegment, between 500 ms and 1 s, puts the second keyframe
	// that long after the first and every later one a whole second after
	// it: the first segment is that short, so a stream is playable that
	// much sooner, and every other segment is a second long. 0 (or 1 s):
	// a keyframe at every whole second. Not below 500 ms: a playlist's
	// target duration is its longest segment rounded, and gohlslib takes
	// the first segment's and only ever raises it.
	FirstSegment time.Duration
}

// Encoder defaults used when a Ladder field is zero.
const (
	DefaultFrameRate = 30
	DefaultPreset    = "veryfast"
)

// DefaultLadder returns 720p, 480p and 360p renditions (2500, 1000 and
// 600 kbit/s, peaks 7% above target, a VBV buffer of two seconds at the
// target rate), 128 kbit/s AAC, 30 fps and the veryfast preset.
func DefaultLadder() Ladder {
	return Ladder{
		Renditions: []Rendition{
			{Name: "720p", Height: 720, VideoBitrate: 2_500_000, MaxRate: 2_675_000, BufSize: 5_000_000},
			{Name: "480p", Height: 480, VideoBitrate: 1_000_000, MaxRate: 1_070_000, BufSize: 2_000_000},
			{Name: "360p", Height: 360, VideoBitrate: 600_000, MaxRate: 642_000, BufSize: 1_200_000},
		},
		AudioBitrate: 128_000,
		FrameRate:    DefaultFrameRate,
		Preset:       DefaultPreset,
	}
}

// x264Presets lists the presets libx264 accepts.
const x264Presets = "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo"

// Validate reports the first invalid field, naming it. Zero FrameRate and
// Preset are valid and mean their defaults.
func (l Ladder) Validate() error {
	if len(l.Renditions) == 0 {
		return fmt.Errorf("ladder: Renditions: need at least one")
	}
	for i, r := range l.Renditions {
		field := fmt.Sprintf("Renditions[%d]", i)
		switch {
		case r.Name == "":
			return fmt.Errorf("ladder: %s.Name: empty", field)
		case r.Height < 2 || r.Height > 4320 || r.Height%2 != 0:
			return fmt.Errorf("ladder: %s.Height %d: must be even, 2 to 4320", field, r.Height)
		case r.VideoBitrate < 10_000 || r.VideoBitrate > 100_000_000:
			return fmt.Errorf("ladder: %s.VideoBitrate %d: must be 10000 to 100000000 bit/s", field, r.VideoBitrate)
		case r.MaxRate < r.VideoBitrate || r.MaxRate > 200_000_000:
			return fmt.Errorf("ladder: %s.MaxRate %d: must be VideoBitrate (%d) to 200000000 bit/s", field, r.MaxRate, r.VideoBitrate)
		case r.BufSize < r.MaxRate/10 || r.BufSize > 400_000_000:
			return fmt.Errorf("ladder: %s.BufSize %d: must be MaxRate/10 to 400000000 bits", field, r.BufSize)
		}
		for j := range i {
			if l.Renditions[j].Name == r.Name {
				return fmt.Errorf("ladder: %s.Name %q: used twice", field, r.Name)
			}
		}
		if i > 0 && r.Height >= l.Renditions[i-1].Height {
			return fmt.Errorf("ladder: %s.Height %d: must be below Renditions[%d].Height %d (highest first)",
				field, r.Height, i-1, l.Renditions[i-1].Height)
		}
	}
	if l.AudioBitrate < 16_000 || l.AudioBitrate > 512_000 {
		return fmt.Errorf("ladder: AudioBitrate %d: must be 16000 to 512000 bit/s", l.AudioBitrate)
	}
	if l.FrameRate < 0 || l.FrameRate > 120 {
		return fmt.Errorf("ladder: FrameRate %d: must be 1 to 120, or 0 for %d", l.FrameRate, DefaultFrameRate)
	}
	if l.FirstSegment != 0 && (l.FirstSegment < 500*time.Millisecond || l.FirstSegment > time.Second) {
		return fmt.Errorf("ladder: FirstSegment %s: must be 500ms to 1s, or 0", l.FirstSegment)
	}
	if l.Preset != "" && !slices.Contains(strings.Fields(x264Presets), l.Preset) {
		return fmt.Errorf("ladder: Preset %q: not one of %s", l.Preset, x264Presets)
	}
	return nil
}

// frameRate returns FrameRate or its default.
func (l Ladder) frameRate() int {
	if l.FrameRate <= 0 {
		return DefaultFrameRate
	}
	return l.FrameRate
}

// preset returns Preset or its default.
func (l Ladder) preset() string {
	if l.Preset == "" {
		return DefaultPreset
	}
	return l.Preset
}
