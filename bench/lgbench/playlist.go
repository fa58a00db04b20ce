package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// mediaPlaylist is what the benchmark reads from an HLS media playlist.
type mediaPlaylist struct {
	// MediaSequence is the MSN of the first segment listed (after any
	// skipped by a delta update).
	MediaSequence uint64
	// Segments are the complete segments, in order.
	Segments []segment
	// Parts are the durations in seconds of the parts listed after the last
	// complete segment: the segment in progress, MSN MediaSequence +
	// len(Segments).
	Parts []float64
	// Ended is true once #EXT-X-ENDLIST is listed.
	Ended bool
}

// segment is one complete media segment.
type segment struct {
	Duration float64 // seconds, from #EXTINF
	Gap      bool    // #EXT-X-GAP: listed but holds no media
}

// parseMediaPlaylist reads the tags the benchmark needs from a media
// playlist and ignores the others.
func parseMediaPlaylist(text string) (mediaPlaylist, error) {
	var pl mediaPlaylist
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	var (
		dur   float64
		inf   bool
		gap   bool
		parts []float64
	)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if first {
			if line != "#EXTM3U" {
				return pl, fmt.Errorf("media playlist: first line %q, want #EXTM3U", line)
			}
			first = false
			continue
		}
		tag, value, _ := strings.Cut(line, ":")
		switch {
		case tag == "#EXT-X-MEDIA-SEQUENCE":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return pl, fmt.Errorf("media playlist: media sequence %q: %w", value, err)
			}
			pl.MediaSequence += n
		case tag == "#EXT-X-SKIP":
			n, err := strconv.ParseUint(attr(value, "SKIPPED-SEGMENTS"), 10, 64)
			if err != nil {
				return pl, fmt.Errorf("media playlist: skip %q: %w", value, err)
			}
			pl.MediaSequence += n
		case tag == "#EXTINF":
			d, _, _ := strings.Cut(value, ",")
			f, err := strconv.ParseFloat(d, 64)
			if err != nil {
				return pl, fmt.Errorf("media playlist: duration %q: %w", value, err)
			}
			dur, inf = f, true
		case tag == "#EXT-X-GAP":
			gap = true
		case tag == "#EXT-X-PART":
			f, err := strconv.ParseFloat(attr(value, "DURATION"), 64)
			if err != nil {
				return pl, fmt.Errorf("media playlist: part %q: %w", value, err)
			}
			parts = append(parts, f)
		case tag == "#EXT-X-ENDLIST":
			pl.Ended = true
		case !strings.HasPrefix(line, "#"):
			if !inf {
				return pl, fmt.Errorf("media playlist: segment %q without #EXTINF", line)
			}
			pl.Segments = append(pl.Segments, segment{Duration: dur, Gap: gap})
			dur, inf, gap, parts = 0, false, false, nil
		}
	}
	if err := sc.Err(); err != nil {
		return pl, fmt.Errorf("media playlist: %w", err)
	}
	if first {
		return pl, fmt.Errorf("media playlist: empty")
	}
	pl.Parts = parts
	return pl, nil
}

// attr returns the value of the attribute name in an HLS attribute list,
// unquoted, or "". Commas inside quoted values do not split.
func attr(list, name string) string {
	quoted, start := false, 0
	for i := 0; i <= len(list); i++ {
		if i < len(list) {
			if list[i] == '"' {
				quoted = !quoted
			}
			if list[i] != ',' || quoted {
				continue
			}
		}
		k, v, _ := strings.Cut(list[start:i], "=")
		if strings.TrimSpace(k) == name {
			return strings.Trim(v, `"`)
		}
		start = i + 1
	}
	return ""
}

// variantURI returns the URI of the variant in a multivariant playlist whose
// short side is height pixels, or of the first variant when none is.
func variantURI(text string, height int) (string, error) {
	var first, want string
	var pending, match bool
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			pending = true
			w, h, _ := strings.Cut(attr(strings.TrimPrefix(line, "#EXT-X-STREAM-INF:"), "RESOLUTION"), "x")
			wi, _ := strconv.Atoi(w)
			hi, _ := strconv.Atoi(h)
			match = min(wi, hi) == height
		case pending && line != "" && !strings.HasPrefix(line, "#"):
			if first == "" {
				first = line
			}
			if match && want == "" {
				want = line
			}
			pending = false
		}
	}
	switch {
	case want != "":
		return want, nil
	case first != "":
		return first, nil
	}
	return "", fmt.Errorf("multivariant playlist: no variant")
}

// mediaClock follows a live media playlist across reloads and window slides
// and tells how much media, in seconds, it has listed since the stream
// began: the durations of every non-gap segment by MSN, plus the parts of
// the segment in progress. The zero value is ready; the stream is assumed to
// begin at MSN 0, and segments before a leading gap segment of the first
// playlist seen to be gaps too (gaps only lead, as gohlslib writes them).
type mediaClock struct {
	seen     bool    // a playlist has been counted
	next     uint64  // MSN of the first segment not yet counted
	complete float64 // seconds in counted segments
	partial  float64 // seconds in the parts of the segment in progress
	missed   int     // segments that left the window before being seen
	// holes are the MSN ranges [from, to] missed.
	holes [][2]uint64
}

// update counts what pl adds and returns the media end in seconds.
func (c *mediaClock) update(pl mediaPlaylist) float64 {
	if !c.seen && len(pl.Segments) > 0 {
		c.seen = true
		if pl.Segments[0].Gap {
			c.next = pl.MediaSequence
		}
	}
	for i, s := range pl.Segments {
		msn := pl.MediaSequence + uint64(i)
		if msn < c.next {
			continue
		}
		if msn > c.next {
			c.missed += int(msn - c.next)
			c.holes = append(c.holes, [2]uint64{c.next, msn - 1})
		}
		if !s.Gap {
			c.complete += s.Duration
		}
		c.next = msn + 1
	}
	if pl.MediaSequence+uint64(len(pl.Segments)) < c.next {
		return c.end() // an older playlist than one already seen
	}
	c.partial = 0
	for _, p := range pl.Parts {
		c.partial += p
	}
	return c.end()
}

// end is the media listed so far, in seconds.
func (c *mediaClock) end() float64 { return c.complete + c.partial }

// nextPart returns the _HLS_msn and _HLS_part of the part that follows the
// last one pl lists, as a low-latency player asks for it.
func nextPart(pl mediaPlaylist) (msn uint64, part int) {
	return pl.MediaSequence + uint64(len(pl.Segments)), len(pl.Parts)
}
