// Package manifest writes the multivariant (master) playlist of a stream
// from the renditions that are actually running.
package manifest

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// AudioGroup is the GROUP-ID of the shared audio rendition.
const AudioGroup = "audio"

// Rendition is one running rendition: its directory and the multivariant
// playlist its own muxer describes itself with (one variant, maybe an audio
// rendition), URIs relative to Dir.
type Rendition struct {
	Dir      string
	Playlist *playlist.Multivariant
}

// ErrNoRenditions is returned when there is nothing to list.
var ErrNoRenditions = errors.New("no renditions")

// Audio returns the audio rendition that Build lists for rends (the first
// separate audio rendition, as the group every variant refers to, its URI
// prefixed by its directory), or nil when the stream has none: a camera-only
// stream, or audio muxed into each variant.
func Audio(rends []Rendition) *playlist.MultivariantRendition {
	for _, r := range rends {
		if r.Playlist == nil {
			continue
		}
		for _, a := range r.Playlist.Renditions {
			if a.Type == playlist.MultivariantRenditionTypeAudio && a.URI != nil {
				c := *a
				uri := r.Dir + "/" + *a.URI
				c.URI, c.GroupID, c.Default, c.Autoselect = &uri, AudioGroup, true, true
				return &c
			}
		}
	}
	return nil
}

// Build returns the multivariant playlist of a stream: one
// #EXT-X-STREAM-INF per rendition, in the order given (highest first), with
// URIs prefixed by the rendition's directory. When the renditions carry their
// audio as a separate rendition, the first one's audio is listed once as the
// group every variant refers to, and audioBandwidth (bits/s) is added to
// each variant's bandwidth, since BANDWIDTH counts all media a player loads.
func Build(rends []Rendition, audioBandwidth int) ([]byte, error) {
	if len(rends) == 0 {
		return nil, ErrNoRenditions
	}
	out := playlist.Multivariant{IndependentSegments: true}
	audio := Audio(rends)
	for _, r := range rends {
		if r.Playlist == nil || len(r.Playlist.Variants) == 0 {
			return nil, fmt.Errorf("rendition %s: no variant", r.Dir)
		}
		out.Version = max(out.Version, r.Playlist.Version)
		v := *r.Playlist.Variants[0]
		v.URI = r.Dir + "/" + v.URI
		out.Variants = append(out.Variants, &v)
	}
	if audio != nil {
		out.Renditions = []*playlist.MultivariantRendition{audio}
		for _, v := range out.Variants {
			v.Audio = AudioGroup
			v.Bandwidth += audioBandwidth
			if v.AverageBandwidth != nil {
				avg := *v.AverageBandwidth + audioBandwidth
				v.AverageBandwidth = &avg
			}
		}
	}
	return out.Marshal()
}
