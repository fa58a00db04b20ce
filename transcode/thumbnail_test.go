package transcode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestThumbnailArgsGolden(t *testing.T) {
	got := strings.Join(ThumbnailArgs(), "\n") + "\n"
	path := filepath.Join("testdata", "thumbnail.golden")
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
		t.Errorf("ThumbnailArgs differ from %s (go test -update rewrites it):\ngot:\n%s", path, got)
	}
}

// TestThumbnail makes a JPEG of a real fragmented MP4 segment, and refuses
// media ffmpeg cannot decode with ffmpeg's own words.
func TestThumbnail(t *testing.T) {
	needFFmpeg(t)
	seg, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	jpeg, err := Thumbnail(context.Background(), "", seg, testLogger(t))
	if err != nil || !bytes.HasPrefix(jpeg, []byte{0xFF, 0xD8}) {
		t.Fatalf("thumbnail: %d bytes, %v", len(jpeg), err)
	}
	probe := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", "-")
	probe.Stdin = bytes.NewReader(jpeg)
	if out, err := probe.Output(); err != nil || strings.TrimSpace(string(out)) != "320,180" {
		t.Errorf("thumbnail size %q (%v), want 320,180", out, err)
	}

	if _, err := Thumbnail(context.Background(), "", []byte("not media at all"), testLogger(t)); err == nil {
		t.Error("a thumbnail of garbage")
	}
}
