package transcode

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestArgsGolden(t *testing.T) {
	tests := []struct {
		golden     string
		format     string
		srcW, srcH int
	}{
		{"landscape_1280x720", "matroska", 1280, 720},
		{"small_640x480", "matroska", 640, 480},
		{"portrait_720x1280", "mp4", 720, 1280},
	}
	l := DefaultLadder()
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			// One argument per line: easy to read and to diff.
			got := strings.Join(Args(l, tt.format, l.Plan(tt.srcW, tt.srcH)), "\n") + "\n"
			path := filepath.Join("testdata", tt.golden+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Args differ from %s (go test -update rewrites it):\ngot:\n%s", path, got)
			}
		})
	}
}

// TestKeyframes: the force_key_frames expression of each FirstSegment.
func TestKeyframes(t *testing.T) {
	for _, c := range []struct {
		first time.Duration
		want  string
	}{
		{0, "expr:gte(t,n_forced*1)"},
		{time.Second, "expr:gte(t,n_forced*1)"},
		{500 * time.Millisecond, "expr:gte(t,n_forced-1+0.5)"},
		{750 * time.Millisecond, "expr:gte(t,n_forced-1+0.75)"},
	} {
		if got := keyframes(c.first); got != c.want {
			t.Errorf("keyframes(%s) = %q, want %q", c.first, got, c.want)
		}
	}
	l := DefaultLadder()
	for _, bad := range []time.Duration{time.Millisecond, 400 * time.Millisecond, 1500 * time.Millisecond, -time.Second} {
		l.FirstSegment = bad
		if l.Validate() == nil {
			t.Errorf("FirstSegment %s accepted", bad)
		}
	}
}

func TestArgsShape(t *testing.T) {
	l := DefaultLadder()
	outs := l.Plan(1280, 720)
	args := Args(l, "", outs)

	// pipe:0 is the only input, read with fast probing and no -f.
	i := slices.Index(args, "-i")
	if i < 0 || args[i+1] != "pipe:0" || slices.Contains(args[:i], "-f") {
		t.Errorf("input part %q", args[:i+2])
	}
	for _, want := range []string{"-probesize", "-analyzeduration"} {
		if !slices.Contains(args[:i], want) {
			t.Errorf("input options lack %s", want)
		}
	}
	for _, bad := range []string{"-re", "nobuffer", "+nobuffer"} {
		if slices.Contains(args, bad) {
			t.Errorf("args contain %s", bad)
		}
	}
	// The maps: the video outputs in order, then the optional audio.
	var maps []string
	for j, a := range args {
		if a == "-map" {
			maps = append(maps, args[j+1])
		}
	}
	if len(maps) != len(outs)+1 || maps[len(maps)-1] != "0:a:0?" {
		t.Errorf("maps %q, want %d video outputs then 0:a:0?", maps, len(outs))
	}
	fc := args[slices.Index(args, "-filter_complex")+1]
	for j, label := range maps[:len(outs)] {
		// Each mapped label is the output of that rendition's scale+setsar chain.
		o := outs[j]
		chain := "scale=" + strconv.Itoa(o.Width) + ":" + strconv.Itoa(o.Height) + "[s"
		k := strings.Index(fc, chain)
		if k < 0 || !strings.Contains(fc[k:], "setsar=1"+label) {
			t.Errorf("map %d (%s) is not the %dx%d chain in %s", j, label, o.Width, o.Height, fc)
		}
	}
	if !strings.HasPrefix(fc, "[0:v:0]fps=30[") {
		t.Errorf("filter_complex %q does not start with the fps filter", fc)
	}
	if got := args[len(args)-5:]; got[0] != "pipe:1" {
		t.Errorf("output is not pipe:1 followed by the global options: %q", got)
	}
}
