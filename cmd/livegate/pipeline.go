package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/manifest"
	"github.com/livegate/livegate/record"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/transcode"
	"github.com/livegate/livegate/web"
)

// hub wires transcode and segmenter into the media pipeline of each stream.
// It is the ingest.Backend and the web.Catalog: it holds the streams that
// are live or ended less than keepEnded ago, and finds the recordings of
// the others.
type hub struct {
	ladder    transcode.Ladder
	ffmpeg    string
	variant   segmenter.Variant
	segments  int
	keepEnded time.Duration
	rec       *record.Store // nil: recording off
	log       *slog.Logger

	mu      sync.Mutex
	streams map[string]*output
	vods    map[string]*record.Recording // newest finished recording by stream, once looked up
}

// output is one stream's HLS output across publisher reconnects.
type output struct {
	hub     *hub
	name    string
	log     *slog.Logger
	seg     *segmenter.Segmenter
	started time.Time
	rec     *record.Writer // nil: not recorded
	indexed bool           // rec has its multivariant playlist

	thumbMu sync.Mutex // one thumbnail made at a time
	thumb   []byte
	thumbAt time.Time

	mu        sync.Mutex
	plan      []transcode.Output // fixed by the first run, so a resumed run fits the muxers
	ended     time.Time
	samples   []sample          // recent (wall, media) pairs for the speed estimate
	recording *record.Recording // this broadcast's, once finished
}

// recordingDir holds an ended stream's finished recording under
// /live/{stream}/ while its last window is still served: a new viewer gets
// the whole broadcast, a player of the window keeps its playlists. A
// rendition's directory cannot contain a dot, so the names never meet.
const recordingDir = "recording.d/"

type sample struct {
	wall  time.Time
	media time.Duration
}

// Open implements ingest.Backend.
func (h *hub) Open(name string) (ingest.Output, error) {
	o := &output{hub: h, name: name, started: time.Now(), log: h.log.With("stream", name)}
	o.seg = &segmenter.Segmenter{Variant: h.variant, SegmentCount: h.segments, Logger: o.log}
	if h.rec != nil {
		w, err := h.rec.Create(name, o.started) // prunes, maybe the cached recording
		if err != nil {
			o.log.Error("recording not started (the live stream goes on)", "error", err)
		} else {
			o.rec, o.seg.OnSegment = w, o.record
		}
	}
	h.mu.Lock()
	old := h.streams[name]
	if h.streams == nil {
		h.streams = map[string]*output{}
	}
	h.streams[name] = o
	delete(h.vods, name)
	h.mu.Unlock()
	if old != nil {
		old.seg.Close() // an ended stream of the same name gives way
	}
	return o, nil
}

// Stream implements web.Catalog: the live or just ended stream, else its
// newest finished recording.
func (h *hub) Stream(name string) web.Stream {
	h.mu.Lock()
	o, v := h.streams[name], h.vods[name]
	h.mu.Unlock()
	if o != nil {
		return o
	}
	if h.rec == nil {
		return nil
	}
	if v == nil {
		r, err := h.rec.Latest(name) // a recording of an earlier run of the gateway
		if err != nil {
			return nil
		}
		v = r
		h.setVOD(name, r)
	}
	return vod{v}
}

func (h *hub) setVOD(name string, r *record.Recording) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.vods == nil {
		h.vods = map[string]*record.Recording{}
	}
	h.vods[name] = r
}

// Names implements web.Catalog.
func (h *hub) Names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.streams))
	for n := range h.streams {
		names = append(names, n)
	}
	return names
}

// Recorded implements web.Recorded.
func (h *hub) Recorded() []string {
	if h.rec == nil {
		return nil
	}
	return h.rec.Streams()
}

// Close releases every stream.
func (h *hub) Close() {
	h.mu.Lock()
	streams := h.streams
	h.streams = nil
	h.mu.Unlock()
	for _, o := range streams {
		o.seg.Close()
	}
}

func format(c ingest.Container) string {
	switch c {
	case ingest.ContainerWebM:
		return "matroska"
	case ingest.ContainerMP4:
		return "mp4"
	}
	return ""
}

// Transcode implements ingest.Output: it starts ffmpeg and a segmenter
// consumer on its output.
func (o *output) Transcode(c ingest.Container, width, height int) (ingest.Run, error) {
	o.mu.Lock()
	if o.plan == nil {
		o.plan = o.hub.ladder.Plan(width, height)
		for _, out := range o.plan {
			o.seg.Names = append(o.seg.Names, out.Name)
		}
	}
	plan := o.plan
	o.mu.Unlock()
	if len(plan) == 0 {
		return nil, errors.New("empty ladder")
	}
	p := &transcode.Process{
		Path:   o.hub.ffmpeg,
		Args:   transcode.Args(o.hub.ladder, format(c), plan),
		Logger: o.log.With("component", "ffmpeg"),
	}
	stdin, stdout, err := p.Start()
	if err != nil {
		return nil, fmt.Errorf("start transcoder: %w", err)
	}
	r := &transcodeRun{proc: p, stdin: stdin, consumed: make(chan error, 1)}
	go func() {
		err := o.seg.Consume(stdout)
		if err != nil {
			p.Close() // nobody reads its output any more
		}
		io.Copy(io.Discard, stdout)
		r.consumed <- err
	}()
	return r, nil
}

// Live implements ingest.Output.
func (o *output) Live() bool {
	select {
	case <-o.seg.Ready():
		return true
	default:
		return false
	}
}

// Speed implements ingest.Output: media time made per wall time over the
// last few seconds.
func (o *output) Speed() float64 {
	now := sample{time.Now(), o.seg.MediaTime()}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.samples = append(o.samples, now)
	for len(o.samples) > 2 && now.wall.Sub(o.samples[1].wall) > 3*time.Second {
		o.samples = o.samples[1:]
	}
	first := o.samples[0]
	wall := now.wall.Sub(first.wall)
	if wall < 500*time.Millisecond {
		return 0
	}
	return float64(now.media-first.media) / float64(wall)
}

// End implements ingest.Output: the playlists are finished, kept for
// keepEnded, then dropped; the recording is finished and served from then
// on.
func (o *output) End() {
	var still []byte // the recording's thumbnail, taken before the muxers go
	if o.rec != nil {
		still, _ = o.seg.Latest()
	}
	o.seg.End()
	o.mu.Lock()
	o.ended = time.Now()
	ended := o.ended
	o.mu.Unlock()
	o.log.Info("stream ended")
	if o.rec != nil {
		o.finishRecording(ended, still)
	}
	time.AfterFunc(o.hub.keepEnded, func() {
		h := o.hub
		h.mu.Lock()
		if h.streams[o.name] == o {
			delete(h.streams, o.name)
		}
		h.mu.Unlock()
		o.seg.Close()
	})
}

// record is the segmenter's OnSegment: it writes the segment, and the
// multivariant playlist once every rendition has one.
func (o *output) record(seg segmenter.Segment) {
	o.rec.Add(record.Segment{Rendition: seg.Rendition, Playlist: seg.Playlist, Sequence: seg.Sequence,
		File: record.File{Name: seg.Name, Data: seg.Data}, Init: record.File{Name: seg.InitName, Data: seg.Init},
		Duration: seg.Duration, Discontinuity: seg.Discontinuity})
	if !o.indexed {
		if body, err := o.Multivariant(); err == nil {
			o.rec.WriteIndex(body)
			o.indexed = true
		}
	}
}

// finishRecording closes the recording after the last segment, gives it a
// thumbnail of still (a segment, if any) and makes it the stream's newest.
func (o *output) finishRecording(ended time.Time, still []byte) {
	index, err := o.Multivariant()
	if err != nil {
		o.log.Warn("recording keeps its first multivariant playlist", "error", err)
		index = nil
	}
	var rends []record.Rendition
	for _, r := range o.Info().Renditions {
		rends = append(rends, record.Rendition(r))
	}
	rec, err := o.rec.Finish(index, rends, ended)
	if err != nil {
		if errors.Is(err, record.ErrEmpty) {
			o.log.Debug("nothing recorded")
		}
		return // a disk error was logged when it stopped the recording
	}
	if still != nil {
		jpeg, err := thumbnail(o.hub.ffmpeg, still)
		if err == nil {
			err = rec.SetThumbnail(jpeg)
		}
		if err != nil {
			o.log.Warn("recording without a thumbnail", "error", err)
		}
	}
	o.mu.Lock()
	o.recording = rec
	o.mu.Unlock()
	o.hub.setVOD(o.name, rec)
}

// finished is this broadcast's finished recording, or nil.
func (o *output) finished() *record.Recording {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.recording
}

// Info implements web.Stream.
func (o *output) Info() web.StreamInfo {
	o.mu.Lock()
	info := web.StreamInfo{Name: o.name, StartedAt: o.started, Live: o.ended.IsZero()}
	if !o.ended.IsZero() {
		ended := o.ended
		info.EndedAt = &ended
	}
	if rec := o.recording; rec != nil {
		started := rec.StartedAt
		info.Recording, info.RecordedAt, info.Duration = true, &started, rec.Duration
	}
	o.mu.Unlock()
	rends := o.seg.Renditions()
	audio := 0 // counted as the multivariant playlist counts it: only when there is sound
	if manifest.Audio(manifestRenditions(rends)) != nil {
		audio = o.hub.ladder.AudioBitrate
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

// Ready implements web.Stream.
func (o *output) Ready() <-chan struct{} { return o.seg.Ready() }

// Multivariant implements web.Stream: the live renditions', or once the
// stream has ended and its recording is finished, the recording's, under
// recordingDir (the last window's if the recording cannot be read).
func (o *output) Multivariant() ([]byte, error) {
	if rec := o.finished(); rec != nil {
		body, err := rec.Multivariant()
		if err == nil {
			return underDir(body, recordingDir), nil
		}
		o.log.Warn("recording's multivariant playlist", "error", err)
	}
	return manifest.Build(manifestRenditions(o.seg.Renditions()), o.hub.ladder.AudioBitrate)
}

// underDir puts every relative URI of a playlist under dir.
func underDir(playlist []byte, dir string) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(playlist, []byte("\n")) {
		switch {
		case len(bytes.TrimSpace(line)) == 0:
		case line[0] != '#':
			out.WriteString(dir)
		default:
			line = bytes.ReplaceAll(line, []byte(`URI="`), []byte(`URI="`+dir))
		}
		out.Write(line)
	}
	return out.Bytes()
}

// thumbnailAge is how long a thumbnail is reused.
const thumbnailAge = 5 * time.Second

// Thumbnail implements web.Stream: a 320-pixel-wide JPEG of the first frame
// of the newest segment, made by ffmpeg at most every thumbnailAge; once
// the stream has ended, its recording's.
func (o *output) Thumbnail() ([]byte, error) {
	if rec := o.finished(); rec != nil {
		return rec.Thumbnail()
	}
	o.thumbMu.Lock()
	defer o.thumbMu.Unlock()
	if o.thumb != nil && time.Since(o.thumbAt) < thumbnailAge {
		return o.thumb, nil
	}
	seg, err := o.seg.Latest()
	if err != nil {
		return nil, err
	}
	jpeg, err := thumbnail(o.hub.ffmpeg, seg)
	if err != nil {
		return nil, err
	}
	o.thumb, o.thumbAt = jpeg, time.Now()
	return jpeg, nil
}

// thumbnail is a 320-pixel-wide JPEG of the first frame of seg (an init
// section and a segment), made by ffmpeg.
func thumbnail(ffmpeg string, seg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
		"-frames:v", "1", "-vf", "scale=320:-2", "-f", "image2", "-c:v", "mjpeg", "-q:v", "5", "pipe:1")
	cmd.Stdin = bytes.NewReader(seg)
	jpeg, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	return jpeg, nil
}

// ServeFile implements web.Stream.
func (o *output) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	if rec := o.finished(); rec != nil && strings.HasPrefix(file, recordingDir) {
		vod{rec}.ServeFile(w, r, file)
		return
	}
	o.seg.Handle(w, r, file)
}

// vod is a finished recording served as the stream.
type vod struct{ rec *record.Recording }

var always = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Info implements web.Stream.
func (v vod) Info() web.StreamInfo {
	started, ended := v.rec.StartedAt, v.rec.EndedAt
	info := web.StreamInfo{Name: v.rec.Stream, StartedAt: started, EndedAt: &ended,
		Recording: true, RecordedAt: &started, Duration: v.rec.Duration}
	for _, r := range v.rec.Renditions {
		info.Renditions = append(info.Renditions, web.RenditionInfo(r))
	}
	return info
}

// Ready implements web.Stream: a recording is ready.
func (v vod) Ready() <-chan struct{} { return always }

// Multivariant implements web.Stream.
func (v vod) Multivariant() ([]byte, error) { return v.rec.Multivariant() }

// ServeFile implements web.Stream; a file under recordingDir is the same
// (a player that began while the ended stream was still held).
func (v vod) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	file = strings.TrimPrefix(file, recordingDir)
	v.rec.ServeFile(w, r, file, segmenter.ContentType(file))
}

// Thumbnail implements web.Stream: the one made when the recording
// finished (none for a recording finished after a hard stop).
func (v vod) Thumbnail() ([]byte, error) { return v.rec.Thumbnail() }

// transcodeRun is one ffmpeg fed by one publisher connection.
type transcodeRun struct {
	proc     *transcode.Process
	stdin    io.WriteCloser
	consumed chan error
}

func (r *transcodeRun) Write(p []byte) (int, error) { return r.stdin.Write(p) }

func (r *transcodeRun) CloseInput() error { return r.stdin.Close() }

func (r *transcodeRun) Abort() { r.proc.Close() }

// Wait waits for the output to be consumed and ffmpeg to exit; ffmpeg's
// own error names the cause best, so it comes first.
func (r *transcodeRun) Wait() error {
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
