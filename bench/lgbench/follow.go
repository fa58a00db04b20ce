package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// listing is what following a media playlist measured.
type listing struct {
	Delays   []float64    // seconds: arrival - w0 - media end, for each new listing
	Series   [][2]float64 // every new listing: seconds since w0, media end
	Reloads  int          // playlist responses read
	Errors   int          // failed or non-200 reloads
	LastErr  string       // the last of them
	Missed   int          // segments that left the window unseen
	Holes    [][2]uint64  // their MSN ranges
	Final    string       // the last playlist read
	Ended    bool         // #EXT-X-ENDLIST was seen
	MediaEnd float64      // seconds of media listed at the end
}

// follow reads the media playlist at u until it ends or ctx does. With
// blocking true it asks for the next part with _HLS_msn/_HLS_part, as a
// low-latency player does, and each answer arrives as soon as the part is
// listed; otherwise it polls every 25 ms. Whenever the media listed grows,
// it records the listing delay: (arrival - w0) - media end, where w0 is the
// wall time of the first byte published and media end the seconds of media
// listed since the stream began. Samples whose media end is below skip
// seconds are left out, and so are those that arrive after until.
func follow(ctx context.Context, client *http.Client, u string, blocking bool, w0 time.Time, skip float64, until time.Time) listing {
	var (
		res   listing
		clock mediaClock
		last  float64
		query string
	)
	for ctx.Err() == nil {
		code, body, at, err := loadgen.Get(ctx, client, u+query, 5*time.Second)
		if err != nil || code != http.StatusOK {
			if ctx.Err() == nil {
				res.Errors++
				res.LastErr = fmt.Sprintf("%s%s: HTTP %d %v", u, query, code, err)
			}
			query = ""
			loadgen.Sleep(ctx, 100*time.Millisecond)
			continue
		}
		pl, err := parseMediaPlaylist(string(body))
		if err != nil {
			res.Errors++
			res.LastErr = err.Error()
			query = ""
			loadgen.Sleep(ctx, 100*time.Millisecond)
			continue
		}
		res.Reloads++
		end := clock.update(pl)
		if end > last+1e-6 {
			last = end
			res.Series = append(res.Series, [2]float64{round3(at.Sub(w0).Seconds()), round3(end)})
			if end >= skip && !at.After(until) {
				res.Delays = append(res.Delays, at.Sub(w0).Seconds()-end)
			}
		}
		res.Missed, res.Holes, res.MediaEnd, res.Final = clock.missed, clock.holes, end, string(body)
		if pl.Ended {
			res.Ended = true
			break
		}
		if blocking {
			msn, part := nextPart(pl)
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			query = sep + "_HLS_msn=" + strconv.FormatUint(msn, 10) + "&_HLS_part=" + strconv.Itoa(part)
		} else {
			loadgen.Sleep(ctx, 25*time.Millisecond)
		}
	}
	return res
}

// round3 rounds to milliseconds, for the report.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
