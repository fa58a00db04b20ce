package manifest

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr[T any](v T) *T { return &v }

// muxerPlaylist is what one gohlslib fMP4 muxer says of itself.
func muxerPlaylist(bw, avg int, res, codec string) *playlist.Multivariant {
	return &playlist.Multivariant{
		Version:             9,
		IndependentSegments: true,
		Variants: []*playlist.MultivariantVariant{{
			Bandwidth: bw, AverageBandwidth: ptr(avg), Resolution: res, FrameRate: ptr(30.0),
			Codecs: []string{codec, "mp4a.40.2"}, URI: "video1_stream.m3u8", Audio: "audio",
		}},
		Renditions: []*playlist.MultivariantRendition{{
			Type: playlist.MultivariantRenditionTypeAudio, GroupID: "audio", Name: "audio2",
			Autoselect: true, Default: true, URI: ptr("audio2_stream.m3u8"),
		}},
	}
}

func TestBuild(t *testing.T) {
	cases := []struct {
		name  string
		rends []Rendition
		audio int
	}{
		{"ladder3", []Rendition{
			{"720p", muxerPlaylist(2700000, 2450000, "1280x720", "avc1.64001f")},
			{"480p", muxerPlaylist(1100000, 980000, "854x480", "avc1.64001e")},
			{"360p", muxerPlaylist(650000, 590000, "640x360", "avc1.64001e")},
		}, 128000},
		{"portrait2", []Rendition{
			{"480p", muxerPlaylist(1100000, 980000, "480x854", "avc1.64001f")},
			{"360p", muxerPlaylist(650000, 590000, "360x640", "avc1.64001e")},
		}, 128000},
		{"mpegts_noaudio", []Rendition{
			{"720p", &playlist.Multivariant{Version: 3, Variants: []*playlist.MultivariantVariant{{
				Bandwidth: 2600000, AverageBandwidth: ptr(2400000), Resolution: "1280x720",
				FrameRate: ptr(30.0), Codecs: []string{"avc1.64001f"}, URI: "main_stream.m3u8",
			}}}},
		}, 128000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Build(c.rends, c.audio)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", c.name+".m3u8")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("playlist differs from %s:\n%s", golden, got)
			}
			var back playlist.Multivariant
			if err := back.Unmarshal(got); err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			if len(back.Variants) != len(c.rends) {
				t.Errorf("got %d variants, want %d", len(back.Variants), len(c.rends))
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build(nil, 0); err != ErrNoRenditions {
		t.Errorf("no renditions: got %v", err)
	}
	if _, err := Build([]Rendition{{Dir: "x", Playlist: &playlist.Multivariant{}}}, 0); err == nil {
		t.Error("rendition without variant: no error")
	}
}

func TestAudio(t *testing.T) {
	video := func(dir string) Rendition {
		return Rendition{dir, &playlist.Multivariant{Variants: []*playlist.MultivariantVariant{{
			Bandwidth: 1, Codecs: []string{"avc1.64001f"}, URI: "main_stream.m3u8",
		}}}}
	}
	cases := []struct {
		name  string
		rends []Rendition
		want  string // URI of the audio rendition, "" for none
	}{
		{"camera only", []Rendition{video("720p"), video("480p")}, ""},
		{"audio on the first", []Rendition{{"720p", muxerPlaylist(1, 1, "1280x720", "avc1.64001f")}, video("480p")}, "720p/audio2_stream.m3u8"},
		{"audio on a later one", []Rendition{video("720p"), {"480p", muxerPlaylist(1, 1, "854x480", "avc1.64001e")}}, "480p/audio2_stream.m3u8"},
		{"no playlist yet", []Rendition{{Dir: "720p"}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			if a := Audio(c.rends); a != nil {
				got = *a.URI
				if a.GroupID != AudioGroup || !a.Default {
					t.Errorf("audio rendition %+v: want group %q, default", a, AudioGroup)
				}
			}
			if got != c.want {
				t.Errorf("Audio: %q, want %q", got, c.want)
			}
		})
	}
}
