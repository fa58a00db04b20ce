package transcode

import (
	"fmt"
	"math"
)

// Output is a rendition sized for one source. Width and Height are the
// encoded picture size in pixels; the embedded Rendition.Height is the rung's
// short side.
type Output struct {
	Rendition
	Width, Height int
}

// maxAspect bounds long side / short side of an output so that a strange
// source size cannot make an enormous picture.
const maxAspect = 4

// Plan returns the outputs for a source of srcW x srcH pixels, highest first.
// Each rung whose Height is at most the source's short side is kept, with
// Height applied to the output's short side, the orientation and aspect ratio
// of the source kept (up to 4:1) and both sides rounded to even numbers. A
// source smaller than the lowest rung gets one output at the source size
// (rounded down to even) with the lowest rung's rates. An unknown size (either
// side zero or less) gets every rung in landscape 16:9. An empty ladder gives
// nil.
func (l Ladder) Plan(srcW, srcH int) []Output {
	if len(l.Renditions) == 0 {
		return nil
	}
	if srcW <= 0 || srcH <= 0 {
		out := make([]Output, 0, len(l.Renditions))
		for _, r := range l.Renditions {
			out = append(out, Output{Rendition: r, Width: even(float64(r.Height) * 16 / 9), Height: even(float64(r.Height))})
		}
		return out
	}
	short, long := min(srcW, srcH), max(srcW, srcH)
	aspect := min(float64(long)/float64(short), maxAspect)
	size := func(s int) (w, h int) {
		ls := even(float64(s) * aspect)
		if srcW >= srcH {
			return ls, s
		}
		return s, ls
	}
	var out []Output
	for _, r := range l.Renditions {
		if r.Height > short {
			continue
		}
		w, h := size(r.Height)
		out = append(out, Output{Rendition: r, Width: w, Height: h})
	}
	if len(out) > 0 {
		return out
	}
	r := l.Renditions[len(l.Renditions)-1]
	s := max(short&^1, 2)
	r.Name = fmt.Sprintf("%dp", s)
	r.Height = s
	w, h := size(s)
	return []Output{{Rendition: r, Width: w, Height: h}}
}

// even rounds x to the nearest even integer, at least 2.
func even(x float64) int {
	return max(2*int(math.Round(x/2)), 2)
}
