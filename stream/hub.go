// Package stream owns the life of every stream of a gateway: when a
// publisher starts, a broadcast joins a transcoder run (package transcode)
// to a segmenter (package segmenter) and, with a recordings directory, a
// recording (package record); a publisher that reconnects within its grace
// period continues the same broadcast with a new transcoder run. When the
// publisher ends, the last window is finished (#EXT-X-ENDLIST) and served
// for Hub.KeepEnded, the recording is finished and served from then on as
// VOD, with a thumbnail made by transcode.Thumbnail.
//
// A broadcast can move between gateways: its State (the segmenter's
// Continuity, the source size its ladder was planned for, its start) is
// what another gateway's Hub needs to continue it, and Handoff stops it
// here without finishing its playlists. Its recording is finished as it
// is handed off; when the gateways share their recordings directory
// (RecordShared), the continuation reopens it and goes on in it, so that
// a broadcast is one recording however often it moves; otherwise each
// gateway records the part it made.
//
// A Hub is the ingest.Backend of package ingest and the web.Catalog of
// package web.
package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/record"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/transcode"
	"github.com/livegate/livegate/web"
)

// Hub holds the streams that are live or ended less than KeepEnded ago,
// and finds the recordings of the others. Set the fields, call Start;
// whoever calls Start must call Close.
type Hub struct {
	// Ladder is the ABR ladder; default transcode.DefaultLadder().
	Ladder transcode.Ladder
	// FFmpeg is the ffmpeg program; default "ffmpeg".
	FFmpeg string
	// Variant is the HLS variant; default segmenter.LowLatency.
	Variant segmenter.Variant
	// SegmentCount is how many segments a live playlist keeps; default 7.
	SegmentCount int
	// PartHoldBack is the PART-HOLD-BACK of low-latency playlists; 0:
	// the segmenter's default (see segmenter.Segmenter.PartHoldBack).
	PartHoldBack time.Duration
	// KeepEnded is how long an ended stream's last window is served;
	// default 60 s.
	KeepEnded time.Duration
	// RecordDir, when set, is where every broadcast is recorded (see
	// package record); empty: recording off.
	RecordDir string
	// RecordKeep is how many recordings of one stream are kept; default 5.
	RecordKeep int
	// RecordShared says other gateways share RecordDir (see
	// record.Store.Shared): a broadcast handed off to this gateway goes on
	// in the recording it had.
	RecordShared bool
	// RecordOpenFiles is how many descriptors of recorded files are kept
	// open between requests (see record.Store.OpenFiles); default 1024,
	// negative: none.
	RecordOpenFiles int
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	rec *record.Store // nil: recording off

	mu      sync.Mutex
	streams map[string]*broadcast
	vods    map[string]vodEntry // newest finished recording by stream, once looked up
	closed  bool

	finishing sync.WaitGroup // recordings of handed-off broadcasts being finished
}

// Start fills in the defaults, checks the settings and ffmpeg, and opens
// the recordings directory (finishing the recordings a hard stop left).
func (h *Hub) Start() error {
	if h.Ladder.Renditions == nil {
		h.Ladder = transcode.DefaultLadder()
	}
	if h.FFmpeg == "" {
		h.FFmpeg = transcode.DefaultPath
	}
	if h.SegmentCount == 0 {
		h.SegmentCount = 7
	}
	if h.KeepEnded == 0 {
		h.KeepEnded = time.Minute
	}
	if h.Logger == nil {
		h.Logger = slog.Default()
	}
	if err := h.Ladder.Validate(); err != nil {
		return fmt.Errorf("stream: ladder: %w", err)
	}
	if h.KeepEnded < 0 {
		return errors.New("stream: KeepEnded: negative")
	}
	if _, err := exec.LookPath(h.FFmpeg); err != nil {
		return fmt.Errorf("stream: ffmpeg: %w (install it: apt-get install -y ffmpeg)", err)
	}
	h.streams = map[string]*broadcast{}
	h.vods = map[string]vodEntry{}
	if h.RecordDir != "" {
		h.rec = &record.Store{Dir: h.RecordDir, Keep: h.RecordKeep, OpenFiles: h.RecordOpenFiles,
			Shared: h.RecordShared, Logger: h.Logger.With("component", "record")}
		if err := h.rec.Start(); err != nil {
			return fmt.Errorf("stream: %w", err)
		}
	}
	return nil
}

// Open implements ingest.Backend: a new broadcast of the named stream,
// which replaces an ended one of the same name; with resume, one that
// continues the broadcast another gateway had (see State).
func (h *Hub) Open(name string, private bool, resume *ingest.Resume) (ingest.Output, error) {
	if h.isClosed() {
		return nil, ErrClosed
	}
	var from *state
	if resume != nil && resume.State != nil {
		from = new(state)
		if err := json.Unmarshal(resume.State, from); err != nil {
			h.Logger.Warn("the state another gateway left is unreadable: the stream starts anew", "stream", name, "error", err)
			from = nil
		} else if !resume.Exact {
			from.Segmenter.Sequence += inexactRoom
			from.Recording = "" // that gateway may still write it
		}
	}
	b, err := newBroadcast(h, name, private, from)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	old := h.streams[name]
	if !h.closed {
		h.streams[name] = b
		delete(h.vods, name)
	}
	closed := h.closed
	h.mu.Unlock()
	if closed { // closed meanwhile
		b.End()
		b.close()
		return nil, ErrClosed
	}
	if old != nil {
		old.close() // an ended stream of the same name gives way
	}
	return b, nil
}

// ErrClosed is returned by Open once Close was called.
var ErrClosed = errors.New("stream: hub closed")

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Stream implements web.Catalog: the live or just ended stream, else its
// newest finished recording, else nil.
func (h *Hub) Stream(name string) web.Stream {
	h.mu.Lock()
	b, v := h.streams[name], h.vods[name]
	h.mu.Unlock()
	if b != nil {
		return b
	}
	if h.rec == nil {
		return nil
	}
	if v.rec == nil || h.RecordShared && time.Since(v.at) > vodRecheck {
		r, err := h.rec.Latest(name) // one of an earlier run of the gateway, or another gateway's
		if err != nil {
			return nil
		}
		v = h.setVOD(name, r)
	}
	return vod{v.rec}
}

// vodRecheck is how long a stream's newest recording is served before the
// shared recordings directory is read again: a recording another gateway
// finished is found within that time.
const vodRecheck = time.Second

// vodEntry is a stream's newest finished recording, and when it was found.
type vodEntry struct {
	rec *record.Recording
	at  time.Time
}

func (h *Hub) setVOD(name string, r *record.Recording) vodEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := vodEntry{r, time.Now()}
	h.vods[name] = v
	return v
}

// Live reports whether the named stream has a broadcast that has not
// ended (nor been handed off).
func (h *Hub) Live(name string) bool {
	h.mu.Lock()
	b := h.streams[name]
	h.mu.Unlock()
	return b != nil && b.live()
}

// Names implements web.Catalog: the live and just ended streams.
func (h *Hub) Names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.streams))
	for n := range h.streams {
		names = append(names, n)
	}
	return names
}

// Recorded implements web.Recorded: the streams that may have a recording.
func (h *Hub) Recorded() []string {
	if h.rec == nil {
		return nil
	}
	return h.rec.Streams()
}

// drop forgets an ended broadcast once KeepEnded is over.
func (h *Hub) drop(b *broadcast) {
	h.mu.Lock()
	if h.streams[b.name] == b {
		delete(h.streams, b.name)
	}
	h.mu.Unlock()
	b.close()
}

// Close releases every stream; later Opens fail. Call it after the
// publishers have ended (ingest.Server.Close). Idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	streams := h.streams
	h.streams, h.closed = nil, true
	h.mu.Unlock()
	for _, b := range streams {
		b.close()
	}
	h.finishing.Wait()
	if h.rec != nil {
		h.rec.Close()
	}
}

// InputFormat is ffmpeg's name of a publisher's container ("matroska",
// "mp4"), or "" to let ffmpeg probe.
func InputFormat(c ingest.Container) string {
	switch c {
	case ingest.ContainerWebM:
		return "matroska"
	case ingest.ContainerMP4:
		return "mp4"
	}
	return ""
}
