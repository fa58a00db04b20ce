package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/manifest"
	"github.com/livegate/livegate/record"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/transcode"
	"github.com/livegate/livegate/web"
)

// broadcast is one stream's HLS output from its first publisher
// connection to its end, across reconnects: it is the ingest.Output and,
// while the Hub holds it, the web.Stream.
type broadcast struct {
	hub     *Hub
	name    string
	private bool
	log     *slog.Logger
	seg     *segmenter.Segmenter
	started time.Time
	rec     *record.Writer // nil: not recorded
	indexed bool           // rec has its multivariant playlist; only OnSegment's goroutine uses it

	thumbMu sync.Mutex // one thumbnail made at a time
	thumb   []byte
	thumbAt time.Time

	mu        sync.Mutex
	plan      []transcode.Output // fixed by the first run, so a resumed run fits the muxers
	srcW      int                // the source size the plan was made for
	srcH      int
	ended     time.Time
	expire    *time.Timer       // drops the ended broadcast after KeepEnded
	samples   []sample          // recent (wall, media) pairs for the speed estimate
	current   *run              // the newest transcoder run
	recording *record.Recording // this broadcast's, once finished
}

type sample struct {
	wall  time.Time
	media time.Duration
}

// state is a broadcast's ingest.Output State: what another gateway needs
// to continue it.
type state struct {
	Segmenter segmenter.Continuity `json:"segmenter"`
	// Width and Height are the source size of the first run, which the
	// ladder was planned for: the continuation has the same renditions.
	Width   int       `json:"width"`
	Height  int       `json:"height"`
	Started time.Time `json:"started"`
	// Recording is the name of the broadcast's recording (see
	// record.Store.Continue), if it has one.
	Recording string `json:"recording,omitempty"`
}

// inexactRoom is how many media sequence numbers a continuation skips
// when the state it continues may lag (ingest.Resume.Exact false): the
// segments the old output may have made after its last report, which
// comes every second or so.
const inexactRoom = 3

func newBroadcast(h *Hub, name string, private bool, from *state) (*broadcast, error) {
	b := &broadcast{hub: h, name: name, private: private, started: time.Now(), log: h.Logger.With("stream", name)}
	b.seg = &segmenter.Segmenter{Variant: h.Variant, SegmentCount: h.SegmentCount, PartHoldBack: h.PartHoldBack, Logger: b.log}
	if f := h.Ladder.FirstSegment; f > 0 && f < time.Second {
		// the muxers cut at each keyframe at least this far from the last
		// cut: the short first segment, then every second
		b.seg.SegmentDuration = f
	}
	if from != nil {
		c := from.Segmenter
		b.seg.Continue = &c
		b.srcW, b.srcH = from.Width, from.Height
		if !from.Started.IsZero() {
			b.started = from.Started
		}
		b.log.Info("continuing the stream of another gateway", "sequence", c.Sequence, "discontinuities", c.Discontinuities)
	}
	if h.rec != nil { // before Start, which wraps OnSegment for a continuation
		w, err := b.openRecording(from)
		if err != nil {
			b.log.Error("recording not started (the live stream goes on)", "error", err)
		} else {
			b.rec, b.seg.OnSegment = w, b.record
		}
	}
	if err := b.seg.Start(); err != nil {
		if b.rec != nil {
			b.rec.Finish(nil, nil, time.Now())
		}
		return nil, err
	}
	return b, nil
}

// openRecording goes on in the recording of the broadcast continued, when
// the gateways share their recordings, or else starts a new one.
func (b *broadcast) openRecording(from *state) (*record.Writer, error) {
	h := b.hub
	if from != nil && from.Recording != "" && h.RecordShared {
		w, err := h.rec.Continue(b.name, from.Recording)
		if err == nil {
			return w, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			b.log.Info("this gateway records its part of the broadcast in a new recording (the gateways do not share their recordings directory)")
		} else {
			b.log.Warn("the recording goes on in a new one", "error", err)
		}
	}
	return h.rec.Create(b.name, b.started, b.private) // prunes, maybe the cached recording
}

// Transcode implements ingest.Output: it starts ffmpeg, the segmenter
// reading its output, and returns the run that feeds it.
func (b *broadcast) Transcode(c ingest.Container, width, height int) (ingest.Run, error) {
	b.mu.Lock()
	if b.plan == nil {
		if b.srcW == 0 && b.srcH == 0 { // a continuation keeps the size of the stream it continues
			b.srcW, b.srcH = width, height
		}
		b.plan = b.hub.Ladder.Plan(b.srcW, b.srcH)
		for _, out := range b.plan {
			b.seg.Names = append(b.seg.Names, out.Name)
		}
	}
	plan := b.plan
	b.mu.Unlock()
	if len(plan) == 0 {
		return nil, errors.New("empty ladder")
	}
	p := &transcode.Process{
		Path:   b.hub.FFmpeg,
		Args:   transcode.Args(b.hub.Ladder, InputFormat(c), plan),
		Logger: b.log.With("component", "ffmpeg"),
	}
	stdin, stdout, err := p.Start()
	if err != nil {
		return nil, fmt.Errorf("start transcoder: %w", err)
	}
	r := &run{proc: p, stdin: stdin, consumed: make(chan error, 1)}
	b.mu.Lock()
	b.current = r
	b.mu.Unlock()
	go func() {
		err := b.seg.ConsumeCaptured(stdout, r.captured)
		if err != nil {
			p.Close() // nobody reads its output any more
		}
		io.Copy(io.Discard, stdout)
		r.consumed <- err
	}()
	return r, nil
}

// Live implements ingest.Output.
func (b *broadcast) Live() bool {
	select {
	case <-b.seg.Ready():
		return true
	default:
		return false
	}
}

// Speed implements ingest.Output: media time made per wall time over the
// last few seconds.
func (b *broadcast) Speed() float64 {
	now := sample{time.Now(), b.seg.MediaTime()}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.samples = append(b.samples, now)
	for len(b.samples) > 2 && now.wall.Sub(b.samples[1].wall) > 3*time.Second {
		b.samples = b.samples[1:]
	}
	first := b.samples[0]
	wall := now.wall.Sub(first.wall)
	if wall < 500*time.Millisecond {
		return 0
	}
	return float64(now.media-first.media) / float64(wall)
}

// End implements ingest.Output: the playlists are finished and kept for
// KeepEnded, then dropped; the recording is finished and served from then
// on.
func (b *broadcast) End() {
	var still []byte // the recording's thumbnail, taken before the muxers go
	if b.rec != nil {
		still, _ = b.seg.Latest()
	}
	b.seg.End()
	b.mu.Lock()
	b.ended = time.Now()
	ended := b.ended
	b.mu.Unlock()
	b.log.Info("stream ended")
	if b.rec != nil {
		index, _ := b.liveMultivariant()
		if rec := b.finishRecording(ended, index, b.Info().Renditions); rec != nil {
			b.publishRecording(rec, still)
		}
	}
	b.mu.Lock()
	b.expire = time.AfterFunc(b.hub.KeepEnded, func() { b.hub.drop(b) })
	b.mu.Unlock()
}

// State implements ingest.Output.
func (b *broadcast) State() []byte {
	c, ok := b.seg.Continuity()
	if !ok {
		return nil
	}
	return b.state(c)
}

func (b *broadcast) state(c segmenter.Continuity) []byte {
	b.mu.Lock()
	st := state{Segmenter: c, Width: b.srcW, Height: b.srcH, Started: b.started}
	b.mu.Unlock()
	if b.rec != nil {
		st.Recording = b.rec.Name()
	}
	out, _ := json.Marshal(st)
	return out
}

// Handoff implements ingest.Output: the segmenter stops without
// finishing the playlists and the broadcast leaves the Hub; the recording
// is finished before Handoff returns (the gateway that continues the
// broadcast may reopen it), and served once it has its thumbnail, which
// takes an ffmpeg run after Handoff returns (the state is wanted at
// once). Hub.Close waits for it.
func (b *broadcast) Handoff() []byte {
	var still, index []byte
	var rends []web.RenditionInfo
	if b.rec != nil {
		still, _ = b.seg.Latest()
		rends = b.Info().Renditions     // the segmenter tells them no more once stopped
		index, _ = b.liveMultivariant() // the last one: after the stop there is none
	}
	c, ok := b.seg.Stop()
	var out []byte
	if ok {
		out = b.state(c)
	}
	b.mu.Lock()
	b.ended = time.Now()
	ended := b.ended
	b.mu.Unlock()
	b.log.Info("stream handed off to another gateway", "sequence", c.Sequence)
	b.hub.drop(b)
	if b.rec != nil {
		if rec := b.finishRecording(ended, index, rends); rec != nil {
			b.hub.finishing.Add(1)
			go func() {
				defer b.hub.finishing.Done()
				b.publishRecording(rec, still)
			}()
		}
	}
	return out
}

// live reports whether the broadcast has not ended.
func (b *broadcast) live() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ended.IsZero()
}

// close releases the segmenter; the broadcast serves nothing more.
func (b *broadcast) close() {
	b.mu.Lock()
	if b.expire != nil {
		b.expire.Stop()
	}
	b.mu.Unlock()
	b.seg.Close()
}

// record is the segmenter's OnSegment: it writes the segment, and the
// multivariant playlist once every rendition has one.
func (b *broadcast) record(seg segmenter.Segment) {
	b.rec.Add(record.Segment{Rendition: seg.Rendition, Playlist: seg.Playlist, Sequence: seg.Sequence,
		File: record.File{Name: seg.Name, Data: seg.Data}, Init: record.File{Name: seg.InitName, Data: seg.Init},
		Duration: seg.Duration, Discontinuity: seg.Discontinuity})
	if !b.indexed {
		if body, err := b.liveMultivariant(); err == nil {
			b.rec.WriteIndex(body)
			b.indexed = true
		}
	}
}

// finishRecording closes the recording after the last segment, with the
// multivariant playlist index (nil: the last one written is kept);
// renditions describe the recorded renditions. nil: nothing was recorded,
// or a disk error stopped the recording (logged then).
func (b *broadcast) finishRecording(ended time.Time, index []byte, renditions []web.RenditionInfo) *record.Recording {
	if index == nil || len(renditions) == 0 {
		b.log.Warn("recording keeps its last multivariant playlist")
		index = nil
	}
	var rends []record.Rendition
	for _, r := range renditions {
		rends = append(rends, record.Rendition(r))
	}
	rec, err := b.rec.Finish(index, rends, ended)
	if errors.Is(err, record.ErrEmpty) {
		b.log.Debug("nothing recorded")
	}
	return rec
}

// publishRecording gives a finished recording a thumbnail of still (a
// segment, if any) and makes it the stream's newest.
func (b *broadcast) publishRecording(rec *record.Recording, still []byte) {
	if still != nil {
		jpeg, err := transcode.Thumbnail(context.Background(), b.hub.FFmpeg, still, b.log.With("component", "thumbnail"))
		if err == nil {
			err = rec.SetThumbnail(jpeg)
		}
		if err != nil {
			b.log.Warn("recording without a thumbnail", "error", err)
		}
	}
	b.mu.Lock()
	b.recording = rec
	b.mu.Unlock()
	b.hub.setVOD(b.name, rec)
}

// finished is this broadcast's finished recording, or nil.
func (b *broadcast) finished() *record.Recording {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recording
}

// Info implements web.Stream.
func (b *broadcast) Info() web.StreamInfo {
	b.mu.Lock()
	info := web.StreamInfo{Name: b.name, StartedAt: b.started, Live: b.ended.IsZero(), Private: b.private}
	if !b.ended.IsZero() {
		ended := b.ended
		info.EndedAt = &ended
	}
	if rec := b.recording; rec != nil {
		started := rec.StartedAt
		info.Recording, info.RecordedAt, info.Duration = true, &started, rec.Duration
	}
	b.mu.Unlock()
	rends := b.seg.Renditions()
	audio := 0 // counted as the multivariant playlist counts it: only when there is sound
	if manifest.Audio(manifestRenditions(rends)) != nil {
		audio = b.hub.Ladder.AudioBitrate
	}
	for _, r := range rends {
		info.Renditions = append(info.Renditions, web.RenditionInfo{
			Name: r.Dir, Width: r.Width, Height: r.Height, Bandwidth: r.Bandwidth + audio,
		})
	}
	return info
}

func manifestRenditions(rends []segmenter.Rendition) []manifest.Rendition {
	out := make([]manifest.Rendition, 0, len(rends))
	for _, r := range rends {
		out = append(out, manifest.Rendition{Dir: r.Dir, Playlist: r.Playlist})
	}
	return out
}

// CaptureDated implements web.CaptureDated: whether the current (or last)
// transcoder run dates its segments by the publisher's capture clock.
func (b *broadcast) CaptureDated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current != nil && b.current.capture.Load() != nil
}

// Private implements web.Stream.
func (b *broadcast) Private() bool { return b.private }

// Ready implements web.Stream.
func (b *broadcast) Ready() <-chan struct{} { return b.seg.Ready() }

// Multivariant implements web.Stream: the live renditions', or once the
// stream has ended and its recording is finished, the recording's, under
// recordingDir (the last window's if the recording cannot be read).
func (b *broadcast) Multivariant() ([]byte, error) {
	if rec := b.finished(); rec != nil {
		body, err := rec.Multivariant()
		if err == nil {
			return underDir(body, recordingDir), nil
		}
		b.log.Warn("recording's multivariant playlist", "error", err)
	}
	return b.liveMultivariant()
}

// liveMultivariant is the multivariant playlist of the segmenter's
// renditions.
func (b *broadcast) liveMultivariant() ([]byte, error) {
	return manifest.Build(manifestRenditions(b.seg.Renditions()), b.hub.Ladder.AudioBitrate)
}

// thumbnailAge is how long a live thumbnail is reused.
const thumbnailAge = 5 * time.Second

// Thumbnail implements web.Stream: a JPEG of the first frame of the
// newest segment, made at most every thumbnailAge; once the stream has
// ended, its recording's.
func (b *broadcast) Thumbnail() ([]byte, error) {
	if rec := b.finished(); rec != nil {
		return rec.Thumbnail()
	}
	b.thumbMu.Lock()
	defer b.thumbMu.Unlock()
	if b.thumb != nil && time.Since(b.thumbAt) < thumbnailAge {
		return b.thumb, nil
	}
	seg, err := b.seg.Latest()
	if err != nil {
		return nil, err
	}
	jpeg, err := transcode.Thumbnail(context.Background(), b.hub.FFmpeg, seg, b.log.With("component", "thumbnail"))
	if err != nil {
		return nil, err
	}
	b.thumb, b.thumbAt = jpeg, time.Now()
	return jpeg, nil
}

// ServeFile implements web.Stream.
func (b *broadcast) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	if rec := b.finished(); rec != nil && strings.HasPrefix(file, recordingDir) {
		vod{rec}.ServeFile(w, r, file)
		return
	}
	b.seg.Handle(w, r, file)
}

// run is one ffmpeg fed by one publisher connection: the ingest.Run.
type run struct {
	proc     *transcode.Process
	stdin    io.WriteCloser
	consumed chan error
	capture  atomic.Pointer[time.Time] // when the run's media time zero was captured, once told
}

// CaptureStart implements ingest.Captured: the segments of this run are
// dated from t (see segmenter.ConsumeCaptured).
func (r *run) CaptureStart(t time.Time) { r.capture.Store(&t) }

// captured is the run's segmenter.CaptureClock.
func (r *run) captured() (time.Time, bool) {
	if t := r.capture.Load(); t != nil {
		return *t, true
	}
	return time.Time{}, false
}

func (r *run) Write(p []byte) (int, error) { return r.stdin.Write(p) }

func (r *run) CloseInput() error { return r.stdin.Close() }

func (r *run) Abort() { r.proc.Close() }

// Wait waits for the output to be consumed and ffmpeg to exit; ffmpeg's
// own error names the cause best, so it comes first.
func (r *run) Wait() error {
	cerr := <-r.consumed
	perr := r.proc.Wait()
	if perr != nil {
		return perr
	}
	if cerr != nil && !errors.Is(cerr, segmenter.ErrEnded) {
		return cerr
	}
	return nil
}
