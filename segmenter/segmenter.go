// Package segmenter cuts the MPEG-TS that ffmpeg writes into HLS: one
// gohlslib muxer per rendition, one-second segments, low-latency parts, kept
// in memory within a bounded window. When the stream ends it freezes the last
// window into a finished playlist with #EXT-X-ENDLIST.
//
// A stream can move between segmenters (between gateways): Stop ends one
// without finishing its playlists and says where it stood (Continuity), and
// a new Segmenter whose Continue is that value goes on from there. gohlslib's
// muxers always number their segments from 0 (7 in low-latency mode, after
// seven #EXT-X-GAP segments for iOS), so a continuing segmenter offsets the
// numbers in what it serves and in the blocking reloads it is asked for: its
// media sequence numbers go on after the old ones, its first segment is
// marked as a discontinuity, its discontinuity sequence follows on, and its
// leading gap segments are left out (they would take the numbers of segments
// players already have).
package segmenter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
)

// Variant is the HLS flavour the segmenter produces.
type Variant int

// The variants. LowLatency is the default.
const (
	LowLatency Variant = iota // fMP4 segments with 200 ms parts and blocking reload
	FMP4                      // fMP4 segments, no parts
	MPEGTS                    // MPEG-TS segments, for old players
)

// ParseVariant reads a variant name: "lowlatency", "fmp4" or "mpegts".
func ParseVariant(s string) (Variant, error) {
	switch s {
	case "lowlatency", "":
		return LowLatency, nil
	case "fmp4":
		return FMP4, nil
	case "mpegts":
		return MPEGTS, nil
	}
	return 0, fmt.Errorf("unknown HLS variant %q (want lowlatency, fmp4 or mpegts)", s)
}

func (v Variant) gohlslib() gohlslib.MuxerVariant {
	switch v {
	case FMP4:
		return gohlslib.MuxerVariantFMP4
	case MPEGTS:
		return gohlslib.MuxerVariantMPEGTS
	}
	return gohlslib.MuxerVariantLowLatency
}

// ErrNoVideo is returned by Consume when the MPEG-TS holds no H.264 track.
var ErrNoVideo = errors.New("no H.264 video track in the transcoder output")

// ErrEnded is returned by Consume once End has been called.
var ErrEnded = errors.New("stream ended")

var validDir = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Segmenter turns ffmpeg's MPEG-TS into HLS. Set the fields, call Start,
// then Consume with the transcoder's output, and serve with Handle.
// Whoever calls Start must call Close (End finishes the playlists; Close
// releases them).
type Segmenter struct {
	// Names are the rendition directories in the order of the video tracks
	// (e.g. "720p"). Missing names default to "r0", "r1", ...
	Names []string
	// Variant defaults to LowLatency.
	Variant Variant
	// SegmentCount is how many segments each playlist keeps; default 7.
	SegmentCount int
	// SegmentDuration is the minimum segment length; default 1 s.
	SegmentDuration time.Duration
	// PartDuration is the minimum low-latency part length; default 200 ms.
	PartDuration time.Duration
	// PartHoldBack is the PART-HOLD-BACK that low-latency playlists offer:
	// how far from the live edge a player should play. hls.js picks its
	// start there when it loads the playlist and, at its defaults, never
	// plays faster afterwards, so its latency is this, plus the time it
	// takes to start (a second or more on a busy machine), plus the
	// listing delay; Safari holds it. Default 3 × PartDuration, the least
	// RFC 8216bis 4.4.3.8 recommends (it requires 2 ×; gohlslib offers
	// 2.5 ×).
	PartHoldBack time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Continue, when set, continues a stream that another segmenter made
	// (see Continuity): media sequence numbers begin at Continue.Sequence,
	// the first segment is a discontinuity after Continue.Discontinuities
	// earlier ones, and timestamps follow on after Continue.Time. Its
	// playlists offer no delta updates (#EXT-X-SKIP).
	Continue *Continuity
	// OnSegment, when set, receives every finished segment of every media
	// playlist once, in order per playlist, within about 250 ms of its end
	// (the last ones, from the finished playlists, during End), from one
	// goroutine at a time, without the Segmenter's lock held. A slow
	// OnSegment delays only the later reports.
	OnSegment func(Segment)

	report    *reporter
	mu        sync.Mutex
	muxers    []*muxer
	ready     chan struct{}
	frozen    *window     // the finished window, once ended
	final     []Rendition // the renditions of the finished window
	ended     bool
	closed    bool
	base      int64        // 90 kHz offset added to every timestamp of the current Consume
	last      int64        // highest video timestamp written, 90 kHz
	lastDate  time.Time    // the #EXT-X-PROGRAM-DATE-TIME of the frame at last; zero before any
	discontAt []uint64     // muxer numbers of the segments that begin a new transcoder run
	mediaTime atomic.Int64 // highest video timestamp, 90 kHz
	holdBack  []byte       // the PART-HOLD-BACK attribute offered

	// Set by Start from Continue, fixed after: served media sequence
	// numbers are the muxers' plus offset; discBase discontinuities came
	// before this segmenter's; continued hides the leading gap segments.
	offset    uint64
	discBase  int
	continued bool
	// onSegment is the OnSegment the caller set, when Start wrapped it to
	// offset what the reporter reads from the muxers (see shiftReported).
	onSegment func(Segment)
}

// Continuity is where a segmenter's stream stands, for another segmenter
// (on another gateway) to continue it: see Segmenter.Continue. It is plain
// data, to be sent as JSON.
type Continuity struct {
	// Sequence is the media sequence number the continuation begins with:
	// one past the segment in progress, which players may have parts of.
	Sequence uint64 `json:"sequence"`
	// Discontinuities is how many discontinuities came before it.
	Discontinuities int `json:"discontinuities"`
	// Time is where the last finished segment ends (the newest timestamp
	// written when that is not known), 90 kHz; the continuation's
	// timestamps follow on 100 ms after it.
	Time int64 `json:"time"`
	// Date is the #EXT-X-PROGRAM-DATE-TIME at Time: the continuation's
	// dates follow on from it as its timestamps do (zero: they come from
	// its own clock).
	Date time.Time `json:"date,omitzero"`
}

// firstSegment is the muxer number of a variant's first media segment:
// gohlslib puts seven gap segments before it in low-latency mode.
func (v Variant) firstSegment() uint64 {
	if v == LowLatency {
		return 7
	}
	return 0
}

type muxer struct {
	dir   string
	m     *gohlslib.Muxer
	video *gohlslib.Track
	audio *gohlslib.Track
	info  *playlist.Multivariant // the muxer's own multivariant, once it has content
}

// Rendition describes one running rendition.
type Rendition struct {
	Dir              string
	Playlist         *playlist.Multivariant // the rendition's own multivariant playlist, URIs relative to Dir
	Width, Height    int
	Bandwidth        int
	AverageBandwidth int
}

// Start fills in the defaults and checks the settings.
func (s *Segmenter) Start() error {
	if s.SegmentCount == 0 {
		s.SegmentCount = 7
	}
	if s.SegmentDuration == 0 {
		s.SegmentDuration = time.Second
	}
	if s.PartDuration == 0 {
		s.PartDuration = 200 * time.Millisecond
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.PartHoldBack == 0 {
		s.PartHoldBack = 3 * s.PartDuration
	}
	if s.SegmentCount < 1 || s.SegmentDuration < 0 || s.PartDuration < 0 {
		return errors.New("segmenter: SegmentCount, SegmentDuration or PartDuration out of range")
	}
	if s.PartHoldBack < 2*s.PartDuration {
		return fmt.Errorf("segmenter: PartHoldBack %s below twice PartDuration %s", s.PartHoldBack, s.PartDuration)
	}
	s.holdBack = []byte("PART-HOLD-BACK=" + strconv.FormatFloat(s.PartHoldBack.Seconds(), 'f', 5, 64))
	if c := s.Continue; c != nil {
		first := s.Variant.firstSegment()
		if c.Sequence < first || c.Discontinuities < 0 || c.Time < 0 {
			return fmt.Errorf("segmenter: Continue: sequence %d (at least %d), discontinuities %d, time %d",
				c.Sequence, first, c.Discontinuities, c.Time)
		}
		s.continued, s.offset, s.discBase = true, c.Sequence-first, c.Discontinuities
		s.discontAt = []uint64{first}
		s.last, s.lastDate = c.Time, c.Date
		s.base = c.Time + 9000 // as a resumed run follows on
		s.mediaTime.Store(c.Time)
		if s.OnSegment != nil {
			// the reporter reads the muxers' numbers while they run, and
			// the served ones from the finished playlists (End restores it)
			s.onSegment = s.OnSegment
			s.OnSegment = func(seg Segment) {
				seg.Sequence += s.offset
				s.onSegment(seg)
			}
		}
	}
	s.ready = make(chan struct{})
	return nil
}

// Ready is closed once every rendition has its first segments.
func (s *Segmenter) Ready() <-chan struct{} { return s.ready }

// MediaTime is the timestamp of the newest video frame written.
func (s *Segmenter) MediaTime() time.Duration {
	return time.Duration(s.mediaTime.Load()) * time.Second / 90000
}

// Consume reads one MPEG-TS stream until it ends. The first call creates
// the muxers from the tracks it finds; a later call (a new transcoder for the
// same stream) continues the same playlists, its timestamps shifted to follow
// on, and must carry the same number of video tracks. Each segment's
// #EXT-X-PROGRAM-DATE-TIME is the wall time its first frame reached the
// segmenter; ConsumeCaptured makes it the capture time. A later run, or the
// first of a continuation, dates its frames on from the last one's as its
// timestamps follow on: a player aligns the segments after a
// discontinuity by their dates, and a jump of the dates (the seconds a
// publisher took to come back) would leave a hole in its timeline, where
// hls.js finds no fragment to load and stops.
func (s *Segmenter) Consume(r io.Reader) error { return s.ConsumeCaptured(r, nil) }

// CaptureClock tells when the media of one transcoder run was captured:
// the wall time (this machine's clock) of its media time zero, the first
// packet of the run, and whether it is known yet. It is called for every
// frame, from Consume's goroutine.
type CaptureClock func() (time.Time, bool)

// ConsumeCaptured is Consume with the segments' #EXT-X-PROGRAM-DATE-TIME
// taken from capture: a frame at media time m (from the run's first packet)
// is dated capture + m, so that a player's now - PROGRAM-DATE-TIME is the
// latency from the camera to its screen. Until capture knows, or with nil,
// a frame is dated when it reaches the segmenter.
func (s *Segmenter) ConsumeCaptured(r io.Reader, capture CaptureClock) error {
	rd := &mpegts.Reader{R: bufio.NewReaderSize(r, 64<<10)} // astits reads 188 bytes at a time
	if err := rd.Initialize(); err != nil {
		return fmt.Errorf("read transcoder output: %w", err)
	}
	var videos []*mpegts.Track
	var audio *mpegts.Track
	for _, t := range rd.Tracks() {
		switch t.Codec.(type) {
		case *mpegts.CodecH264:
			videos = append(videos, t)
		case *mpegts.CodecMPEG4Audio:
			if audio == nil {
				audio = t
			}
		}
	}
	if len(videos) == 0 {
		return ErrNoVideo
	}
	muxers, base, err := s.attach(videos, audio)
	if err != nil {
		return err
	}
	s.mu.Lock()
	anchor, anchorDate := s.last, s.lastDate // the run before's newest frame, if any
	s.mu.Unlock()
	log := s.Logger
	log.Debug("transcoder output started", "video_tracks", len(videos), "audio", audio != nil)
	rd.OnDecodeError(func(err error) { log.Warn("transcoder output", "error", err) })

	var dec mpegts.TimeDecoder // one decoder keeps every track on one timeline
	// date gives a frame at rel (90 kHz since the run's first packet) its
	// wall time
	date := func(rel int64) time.Time {
		if !anchorDate.IsZero() {
			return anchorDate.Add(time.Duration(base+rel-anchor) * time.Second / 90000)
		}
		if capture != nil {
			if t, ok := capture(); ok {
				return t.Add(time.Duration(rel) * time.Second / 90000)
			}
		}
		return time.Now()
	}
	for i, t := range videos {
		mx := muxers[i]
		leading := i == 0
		// The raw PES payload, split by splitAnnexB: OnDataH264 scans it
		// byte by byte, twice, which took a quarter of Consume's CPU on a
		// live stream (no B-frames, so DTS is PTS and is not needed).
		rd.OnDataMPEGxVideo(t, func(pts int64, data []byte) error {
			au, err := splitAnnexB(data)
			if err != nil {
				log.Warn("transcoder output", "error", err)
				return nil
			}
			rel := dec.Decode(pts)
			pts = base + rel
			at := date(rel)
			if leading {
				s.note(pts, at, true)
			}
			return mx.m.WriteH264(mx.video, at, pts, au)
		})
	}
	if audio != nil {
		rate := int64(audio.Codec.(*mpegts.CodecMPEG4Audio).SampleRate)
		rd.OnDataMPEG4Audio(audio, func(pts int64, aus [][]byte) error {
			rel := dec.Decode(pts)
			pts = base + rel
			at := date(rel)
			s.note(pts, at, false)
			for _, mx := range muxers {
				if mx.audio == nil {
					continue
				}
				if err := mx.m.WriteMPEG4Audio(mx.audio, at, pts*rate/90000, aus); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for {
		if err := rd.Read(); err != nil {
			if isEOF(err) {
				return nil
			}
			return fmt.Errorf("read transcoder output: %w", err)
		}
	}
}

// startCode begins every NAL unit of an Annex B stream; a four-byte start
// code is a zero byte (trailing the previous unit) and this.
var startCode = []byte{0, 0, 1}

// splitAnnexB splits an H.264 access unit in Annex B format into its NAL
// units, without an access unit delimiter, as h264.AnnexB.Unmarshal does,
// but searching for start codes with bytes.Index.
func splitAnnexB(data []byte) ([][]byte, error) {
	if len(data) > h264.MaxAccessUnitSize {
		return nil, fmt.Errorf("access unit of %d bytes, more than %d", len(data), h264.MaxAccessUnitSize)
	}
	i := bytes.Index(data, startCode)
	if i < 0 || i > 1 || (i == 1 && data[0] != 0) {
		return nil, errors.New("access unit does not begin with a start code")
	}
	var au [][]byte
	for data = data[i+3:]; len(data) > 0; {
		end, next := len(data), len(data)
		if j := bytes.Index(data, startCode); j >= 0 {
			end, next = j, j+3
		}
		nalu := bytes.TrimRight(data[:end], "\x00") // a NAL unit never ends with a zero byte
		if len(nalu) > 0 && (len(au) > 0 || h264.NALUType(nalu[0]&0x1f) != h264.NALUTypeAccessUnitDelimiter) {
			au = append(au, nalu)
		}
		data = data[next:]
	}
	if len(au) == 0 {
		return nil, errors.New("access unit without NAL units")
	}
	return au, nil
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "no more packets") || strings.Contains(err.Error(), "EOF")
}

// note keeps the newest timestamp and its date, where a later transcoder
// run follows on.
func (s *Segmenter) note(pts int64, at time.Time, video bool) {
	s.mu.Lock()
	if pts > s.last {
		s.last, s.lastDate = pts, at
	}
	s.mu.Unlock()
	if video {
		s.mediaTime.Store(pts)
	}
}

// nextSegment is the media sequence number of the segment in progress,
// and the date where the last finished one ends (zero when unknown).
func nextSegment(mx *muxer) (uint64, time.Time, error) {
	if mx.info == nil || len(mx.info.Variants) == 0 {
		return 0, time.Time{}, errors.New("no content yet")
	}
	body, err := get(mx.m, stripQuery(mx.info.Variants[0].URI))
	if err != nil {
		return 0, time.Time{}, err
	}
	var pl playlist.Media
	if err := pl.Unmarshal(body); err != nil {
		return 0, time.Time{}, err
	}
	var end time.Time
	if n := len(pl.Segments); n > 0 && pl.Segments[n-1].DateTime != nil {
		end = pl.Segments[n-1].DateTime.Add(pl.Segments[n-1].Duration)
	}
	return uint64(pl.MediaSequence + len(pl.Segments)), end, nil
}

// attach creates the muxers on the first call, or checks that a new
// transcoder's tracks fit the running ones and returns the timestamp offset.
func (s *Segmenter) attach(videos []*mpegts.Track, audio *mpegts.Track) ([]*muxer, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closed {
		return nil, 0, ErrEnded
	}
	if s.ready == nil {
		return nil, 0, errors.New("segmenter: not started")
	}
	if s.muxers != nil {
		if len(videos) != len(s.muxers) || (audio == nil) != (s.muxers[0].audio == nil) {
			return nil, 0, fmt.Errorf("continue stream: got %d video tracks (audio %t), running %d",
				len(videos), audio != nil, len(s.muxers))
		}
		// follow on 100 ms after the newest timestamp (an audio packet may
		// run past it), and mark the
		// segment after the one in progress as a discontinuity
		s.base = s.last + 9000
		if next, _, err := nextSegment(s.muxers[0]); err == nil {
			s.discontAt = append(s.discontAt, next+1)
		}
		return s.muxers, s.base, nil
	}
	for i := range videos {
		dir := fmt.Sprintf("r%d", i)
		if i < len(s.Names) && validDir.MatchString(s.Names[i]) {
			dir = s.Names[i]
		}
		mx := &muxer{dir: dir, video: &gohlslib.Track{Codec: &codecs.H264{}, ClockRate: 90000}}
		tracks := []*gohlslib.Track{mx.video}
		// fMP4 variants list the audio once, as a rendition of the first
		// muxer that every variant refers to; MPEG-TS muxes it into each
		if audio != nil && (i == 0 || s.Variant == MPEGTS) {
			conf := audio.Codec.(*mpegts.CodecMPEG4Audio).Config
			mx.audio = &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: conf}, ClockRate: conf.SampleRate}
			tracks = append(tracks, mx.audio)
		}
		log := s.Logger.With("rendition", dir)
		mx.m = &gohlslib.Muxer{
			Tracks:             tracks,
			Variant:            s.Variant.gohlslib(),
			SegmentCount:       s.SegmentCount,
			SegmentMinDuration: s.SegmentDuration,
			PartMinDuration:    s.PartDuration,
			OnEncodeError:      func(err error) { log.Warn("hls muxer", "error", err) },
		}
		if err := mx.m.Start(); err != nil {
			for _, done := range s.muxers {
				done.m.Close()
			}
			s.muxers = nil
			return nil, 0, fmt.Errorf("start hls muxer %s: %w", dir, err)
		}
		s.muxers = append(s.muxers, mx)
	}
	go s.waitReady(s.muxers)
	s.startReporting()
	return s.muxers, s.base, nil // 0, or where a continued stream follows on
}

// waitReady asks each muxer for its multivariant playlist, which gohlslib
// holds until the muxer has content, and closes Ready when all have answered.
func (s *Segmenter) waitReady(muxers []*muxer) {
	var wg sync.WaitGroup
	for _, mx := range muxers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl, err := fetchMultivariant(mx.m)
			if err != nil {
				return
			}
			s.mu.Lock()
			mx.info = pl
			s.mu.Unlock()
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mx := range muxers {
		if mx.info == nil {
			return // closed before it had content
		}
	}
	close(s.ready)
	s.Logger.Debug("first segments ready")
}

func fetchMultivariant(m *gohlslib.Muxer) (*playlist.Multivariant, error) {
	body, err := get(m, "index.m3u8")
	if err != nil {
		return nil, err
	}
	var pl playlist.Multivariant
	if err := pl.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("parse muxer playlist: %w", err)
	}
	return &pl, nil
}

// get asks a muxer for one of its files as a player would.
func get(m *gohlslib.Muxer, file string) ([]byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "/"+file, nil)
	if err != nil {
		return nil, err
	}
	var c capture
	m.Handle(&c, req)
	if c.code != http.StatusOK || c.body == nil {
		return nil, fmt.Errorf("muxer file %s: status %d", file, c.code)
	}
	return *c.body, nil
}

// Renditions describes the renditions once Ready; nil before.
func (s *Segmenter) Renditions() []Rendition {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen != nil {
		return s.final
	}
	var out []Rendition
	for _, mx := range s.muxers {
		if mx.info == nil {
			return nil
		}
		out = append(out, s.describe(mx))
	}
	return out
}

func (s *Segmenter) describe(mx *muxer) Rendition {
	// refresh the measured bandwidth while the muxer runs
	if !s.ended {
		if pl, err := fetchMultivariant(mx.m); err == nil {
			mx.info = pl
		}
	}
	r := Rendition{Dir: mx.dir, Playlist: mx.info}
	if len(mx.info.Variants) > 0 {
		v := mx.info.Variants[0]
		r.Bandwidth = v.Bandwidth
		if v.AverageBandwidth != nil {
			r.AverageBandwidth = *v.AverageBandwidth
		}
		fmt.Sscanf(v.Resolution, "%dx%d", &r.Width, &r.Height)
	}
	return r
}

// Latest returns the newest complete segment of the lowest rendition, with
// its init section first when the variant has one: a decodable second of
// video, for thumbnails.
func (s *Segmenter) Latest() ([]byte, error) {
	s.mu.Lock()
	var mx *muxer
	if len(s.muxers) > 0 {
		mx = s.muxers[len(s.muxers)-1]
	}
	s.mu.Unlock()
	if mx == nil || mx.info == nil || len(mx.info.Variants) == 0 {
		return nil, errors.New("no segments")
	}
	body, err := get(mx.m, stripQuery(mx.info.Variants[0].URI))
	if err != nil {
		return nil, err
	}
	var pl playlist.Media
	if err := pl.Unmarshal(body); err != nil {
		return nil, err
	}
	if len(pl.Segments) == 0 || pl.Segments[len(pl.Segments)-1].Gap {
		return nil, errors.New("no segments")
	}
	var out []byte
	if pl.Map != nil {
		if out, err = get(mx.m, stripQuery(pl.Map.URI)); err != nil {
			return nil, err
		}
	}
	seg, err := get(mx.m, stripQuery(pl.Segments[len(pl.Segments)-1].URI))
	return append(out, seg...), err
}

// Handle serves one file of the stream: "DIR/NAME" of a rendition. It
// answers 404 for anything it does not hold.
func (s *Segmenter) Handle(w http.ResponseWriter, r *http.Request, file string) {
	if s.serveFrozen(w, r, file) {
		return
	}
	s.mu.Lock()
	var mx *muxer
	dir, _, _ := strings.Cut(file, "/")
	for _, m := range s.muxers {
		if m.dir == dir {
			mx = m
		}
	}
	discont := s.discontAt
	s.mu.Unlock()
	if mx == nil || !strings.Contains(file, "/") {
		http.NotFound(w, r)
		return
	}
	playlist := strings.HasSuffix(file, ".m3u8")
	uri := r.URL.RequestURI()
	if playlist && s.continued {
		r = s.translate(r)
	}
	c := capture{body: bodies.Get().(*[]byte)}
	defer c.release()
	mx.m.Handle(&c, r)
	if c.code == 0 {
		http.NotFound(w, r) // gohlslib answers unknown files with an empty 200
		return
	}
	body := *c.body
	if playlist {
		// a blocking reload held while the stream ended: gohlslib answers 500
		// when its muxer closes; the finished playlist is the right answer
		if c.code == http.StatusInternalServerError && s.serveFrozen(w, r, file) {
			return
		}
		// held while the segmenter stopped (Stop): the client asks again,
		// and is answered by whatever serves the stream now
		if c.code == http.StatusInternalServerError && s.Ended() {
			http.Redirect(w, r, uri, http.StatusTemporaryRedirect)
			return
		}
		if (len(discont) > 0 || s.continued) && c.code == http.StatusOK {
			body = s.rewrite(body, discont)
		}
		if c.code == http.StatusOK {
			body = s.offerHoldBack(body)
		}
	}
	for k, v := range c.header {
		w.Header()[k] = v
	}
	if c.code == http.StatusOK && r.Header.Get("Range") != "" {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	// gohlslib streams without a length, which net/http would send chunked
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(c.code)
	w.Write(body)
}

// offerHoldBack replaces the PART-HOLD-BACK attribute gohlslib writes
// (2.5 part targets) with the segmenter's, in place: the value has the
// same five decimals, so only a value of ten seconds or more changes the
// length. A playlist without the attribute is returned unchanged.
func (s *Segmenter) offerHoldBack(body []byte) []byte {
	const attr = "PART-HOLD-BACK="
	head := body[:min(len(body), 512)] // the attribute is in EXT-X-SERVER-CONTROL, near the top
	i := bytes.Index(head, []byte(attr))
	if i < 0 {
		return body
	}
	end := i + len(attr)
	for end < len(body) && (body[end] == '.' || body[end] >= '0' && body[end] <= '9') {
		end++
	}
	if end-i == len(s.holdBack) {
		copy(body[i:end], s.holdBack)
		return body
	}
	out := make([]byte, 0, len(body)-(end-i)+len(s.holdBack))
	out = append(append(append(out, body[:i]...), s.holdBack...), body[end:]...)
	return out
}

// rewrite presents a muxer's media playlist (see present); it returns
// the playlist unchanged if it cannot parse it.
func (s *Segmenter) rewrite(body []byte, discont []uint64) []byte {
	var pl playlist.Media
	if err := pl.Unmarshal(body); err != nil {
		return body
	}
	s.present(&pl, discont)
	out, err := marshal(&pl)
	if err != nil {
		return body
	}
	return out
}

// marshal writes a media playlist. gohlslib v2.2.0's Marshal writes the
// media sequence number as #EXT-X-DISCONTINUITY-SEQUENCE: the line is
// written again with the right number.
func marshal(pl *playlist.Media) ([]byte, error) {
	out, err := pl.Marshal()
	if err != nil || pl.DiscontinuitySequence == nil {
		return out, err
	}
	wrong := []byte("#EXT-X-DISCONTINUITY-SEQUENCE:" + strconv.Itoa(pl.MediaSequence) + "\n")
	right := []byte("#EXT-X-DISCONTINUITY-SEQUENCE:" + strconv.Itoa(*pl.DiscontinuitySequence) + "\n")
	return bytes.Replace(out, wrong, right, 1), nil
}

// present turns a muxer's media playlist into the one served: the
// discontinuities marked (discont in muxer numbers) and, for a continued
// stream, the leading gap segments left out, the media sequence numbers
// offset, and no delta updates offered.
func (s *Segmenter) present(pl *playlist.Media, discont []uint64) {
	markDiscontinuities(pl, discont, s.discBase)
	if !s.continued {
		return
	}
	for pl.Skip == nil && len(pl.Segments) > 0 && pl.Segments[0].Gap {
		pl.Segments = pl.Segments[1:]
		pl.MediaSequence++
	}
	if pl.ServerControl != nil {
		pl.ServerControl.CanSkipUntil = nil
	}
	pl.MediaSequence += int(s.offset)
}

// translate turns a player's playlist request to a continued stream into
// the muxer's: _HLS_msn in muxer numbers, or, for a segment before this
// segmenter's first (a player of the stream's previous segmenter waiting
// for what never came), no blocking at all; no delta update.
func (s *Segmenter) translate(r *http.Request) *http.Request {
	q := r.URL.Query()
	msn, hasMSN := q["_HLS_msn"]
	if !hasMSN && !q.Has("_HLS_skip") {
		return r
	}
	q.Del("_HLS_skip")
	if hasMSN {
		n, err := strconv.ParseUint(msn[0], 10, 64)
		switch {
		case err != nil: // gohlslib answers 400
		case n < s.offset+s.Variant.firstSegment():
			q.Del("_HLS_msn")
			q.Del("_HLS_part")
		default:
			q.Set("_HLS_msn", strconv.FormatUint(n-s.offset, 10))
		}
	}
	out := *r
	u := *r.URL
	u.RawQuery = q.Encode()
	out.URL = &u
	return &out
}

// markDiscontinuities flags the segments that begin a new transcoder run
// and counts the ones that have left the window, after base earlier ones.
func markDiscontinuities(pl *playlist.Media, at []uint64, base int) {
	first := uint64(pl.MediaSequence)
	if pl.Skip != nil {
		first += uint64(pl.Skip.SkippedSegments)
	}
	gone := base
	for _, msn := range at {
		if msn < uint64(pl.MediaSequence) {
			gone++
		}
		if msn >= first && msn < first+uint64(len(pl.Segments)) {
			pl.Segments[msn-first].Discontinuity = true
		}
	}
	if gone > 0 {
		pl.DiscontinuitySequence = &gone
	}
}

// serveFrozen answers from the finished window once the stream ended; it
// reports whether it answered.
func (s *Segmenter) serveFrozen(w http.ResponseWriter, r *http.Request, file string) bool {
	s.mu.Lock()
	frozen := s.frozen
	s.mu.Unlock()
	return frozen.serve(w, r, file)
}

func contentType(file string) string {
	switch {
	case strings.HasSuffix(file, ".m3u8"):
		return "application/vnd.apple.mpegurl"
	case strings.HasSuffix(file, ".ts"):
		return "video/mp2t"
	}
	return "video/mp4"
}

// End freezes the current window of every rendition into finished
// playlists ending with #EXT-X-ENDLIST, served by Handle from then on, and
// releases the muxers. Call it after the last Consume returned.
func (s *Segmenter) End() {
	s.mu.Lock()
	if s.ended || s.closed {
		s.mu.Unlock()
		return
	}
	s.ended = true
	muxers, discont := s.muxers, s.discontAt
	s.mu.Unlock()
	s.stopReporting()
	defer s.reportFrozen() // what finished since the last round, and what the end completes

	frozen := map[string][]byte{}
	finals := map[string]*playlist.Media{}
	s.shiftReported()
	for _, mx := range muxers {
		if err := s.freeze(mx, discont, frozen, finals); err != nil {
			s.Logger.Warn("freeze ended stream", "rendition", mx.dir, "error", err)
		}
	}
	alignEnds(finals, frozen)
	for file, pl := range finals {
		body, err := marshal(pl)
		if err != nil {
			s.Logger.Warn("freeze ended stream", "playlist", file, "error", err)
			continue
		}
		frozen[file] = body
	}
	s.mu.Lock()
	s.final = nil
	for _, mx := range muxers {
		if mx.info != nil && frozen[mx.dir+"/"+stripQuery(mx.info.Variants[0].URI)] != nil {
			s.final = append(s.final, s.describe(mx)) // the renditions that have a finished playlist
		}
	}
	s.frozen = newWindow(frozen)
	s.muxers = nil
	s.mu.Unlock()
	for _, mx := range muxers {
		mx.m.Close()
	}
}

// shiftReported moves what the reporter has reported from muxer numbers
// to served ones, which the finished playlists it reads last (reportFrozen)
// carry, and gives it back the caller's OnSegment. Called by End after the
// reporter stopped.
func (s *Segmenter) shiftReported() {
	s.mu.Lock()
	rep := s.report
	s.mu.Unlock()
	if rep == nil || !s.continued {
		return
	}
	for key, next := range rep.next {
		rep.next[key] = next + s.offset
	}
	s.OnSegment = s.onSegment
}

// Continuity says where the stream stands, for a segmenter that continues
// it elsewhere; ok is false before the first segments exist (a
// continuation has nothing to follow) and once the muxers are gone.
func (s *Segmenter) Continuity() (c Continuity, ok bool) {
	s.mu.Lock()
	var mx *muxer
	if len(s.muxers) > 0 && s.muxers[0].info != nil {
		mx = s.muxers[0]
	}
	last, date, discont := s.last, s.lastDate, s.discontAt
	s.mu.Unlock()
	if mx == nil {
		return Continuity{}, false
	}
	next, end, err := nextSegment(mx) // the segment in progress, muxer numbers
	if err != nil {
		return Continuity{}, false
	}
	c = Continuity{Sequence: next + 1 + s.offset, Discontinuities: s.discBase, Time: last, Date: date}
	if !end.IsZero() && !date.IsZero() && end.Before(date) {
		// From the end of the last finished segment: players have the
		// parts of the one in progress, some or none, and the
		// continuation overlaps what some have rather than leave a hole
		// behind what the others have (see ConsumeCaptured).
		c.Time -= int64(date.Sub(end) * 90000 / time.Second)
		c.Date = end
	}
	for _, msn := range discont {
		if msn <= next {
			c.Discontinuities++
		}
	}
	return c, true
}

// Stop ends the segmenter for a continuation elsewhere, after the last
// Consume returned: the segments finished so far go to OnSegment, the
// muxers close, nothing is frozen (no #EXT-X-ENDLIST: players are to go on
// with the continuation), and Handle answers 404 from then on; a blocking
// reload it holds is redirected to itself (307), to be asked again of
// whatever serves the stream then. It returns where the stream stood (ok false
// as Continuity). Use Close after it, not End.
func (s *Segmenter) Stop() (c Continuity, ok bool) {
	c, ok = s.Continuity()
	s.mu.Lock()
	if s.ended || s.closed {
		s.mu.Unlock()
		return c, ok
	}
	s.ended = true
	s.mu.Unlock()
	s.stopReporting()
	s.mu.Lock()
	report := s.report != nil
	s.mu.Unlock()
	if report {
		s.reportSegments() // the reporter's last round, on this goroutine now that it stopped
	}
	s.mu.Lock()
	muxers := s.muxers
	s.muxers = nil
	s.mu.Unlock()
	for _, mx := range muxers {
		mx.m.Close()
	}
	return c, ok
}

// Ended reports whether End was called.
func (s *Segmenter) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// alignEnds cuts the finished playlists to the same last segment, and drops
// the files of the segments cut, so that a player switching renditions at
// the end finds each segment in every one: a transcoder stopped in the
// middle of its work may have cut one rendition further than another. A
// playlist left with no segment is removed.
func alignEnds(finals map[string]*playlist.Media, files map[string][]byte) {
	end := -1
	for _, pl := range finals {
		if e := pl.MediaSequence + len(pl.Segments); end < 0 || e < end {
			end = e
		}
	}
	for file, pl := range finals {
		dir, _, _ := strings.Cut(file, "/")
		for len(pl.Segments) > 0 && pl.MediaSequence+len(pl.Segments) > end {
			delete(files, dir+"/"+stripQuery(pl.Segments[len(pl.Segments)-1].URI))
			pl.Segments = pl.Segments[:len(pl.Segments)-1]
		}
		if len(pl.Segments) == 0 {
			delete(finals, file)
		}
	}
}

// freeze takes the current window of a muxer: its files go into out, its
// finished media playlists into finals, both by "DIR/NAME", numbered as
// served.
func (s *Segmenter) freeze(mx *muxer, discont []uint64, out map[string][]byte, finals map[string]*playlist.Media) error {
	if mx.info == nil {
		return errors.New("no content yet")
	}
	for _, uri := range mediaPlaylists(mx.info) {
		body, err := get(mx.m, uri)
		if err != nil {
			return err
		}
		var pl playlist.Media
		if err := pl.Unmarshal(body); err != nil {
			return fmt.Errorf("parse media playlist %s: %w", uri, err)
		}
		markDiscontinuities(&pl, discont, s.discBase)
		final := &playlist.Media{
			Version:               pl.Version,
			IndependentSegments:   pl.IndependentSegments,
			TargetDuration:        pl.TargetDuration,
			MediaSequence:         pl.MediaSequence,
			DiscontinuitySequence: pl.DiscontinuitySequence,
			Map:                   pl.Map,
			Endlist:               true,
		}
		if pl.Map != nil {
			if out[mx.dir+"/"+stripQuery(pl.Map.URI)], err = get(mx.m, stripQuery(pl.Map.URI)); err != nil {
				return err
			}
		}
		for _, seg := range pl.Segments {
			if seg.Gap && len(final.Segments) == 0 {
				final.MediaSequence++
				continue
			}
			name := stripQuery(seg.URI)
			if out[mx.dir+"/"+name], err = get(mx.m, name); err != nil {
				return err
			}
			seg.Parts = nil
			final.Segments = append(final.Segments, seg)
		}
		if len(pl.Parts) > 0 && pl.Parts[0].Independent {
			// the segment in progress, which gohlslib never completes
			// without a next keyframe: its parts, joined, are the last
			// segment, so the finished playlist holds what viewers saw live
			// (named after its first part: the audio playlist has its own)
			last := &playlist.MediaSegment{URI: "last_" + stripQuery(pl.Parts[0].URI),
				Discontinuity: slices.Contains(discont, uint64(pl.MediaSequence+len(pl.Segments)))}
			var body []byte
			for _, part := range pl.Parts {
				data, err := get(mx.m, stripQuery(part.URI))
				if err != nil {
					return err
				}
				body = append(body, data...)
				last.Duration += part.Duration
			}
			out[mx.dir+"/"+last.URI] = body
			final.Segments = append(final.Segments, last)
		}
		if len(final.Segments) == 0 {
			return fmt.Errorf("media playlist %s: no segments", uri)
		}
		final.MediaSequence += int(s.offset) // the leading gaps are left out above
		finals[mx.dir+"/"+uri] = final
	}
	return nil
}

// mediaPlaylists lists the media playlists a muxer's multivariant names.
func mediaPlaylists(pl *playlist.Multivariant) []string {
	var uris []string
	for _, v := range pl.Variants {
		uris = append(uris, stripQuery(v.URI))
	}
	for _, r := range pl.Renditions {
		if r.URI != nil {
			uris = append(uris, stripQuery(*r.URI))
		}
	}
	return uris
}

func stripQuery(uri string) string {
	u, _, _ := strings.Cut(uri, "?")
	return u
}

// Close releases the muxers without freezing anything. Idempotent.
func (s *Segmenter) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.stopReporting()
	s.mu.Lock()
	muxers := s.muxers
	s.muxers = nil
	s.mu.Unlock()
	s.frozen.close()
	for _, mx := range muxers {
		mx.m.Close()
	}
}

// capture is an http.ResponseWriter that keeps what a muxer answers.
type capture struct {
	header http.Header
	code   int
	body   *[]byte // from bodies when released; allocated by Write otherwise
}

// bodies recycles the buffers that Handle captures answers in.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

func (c *capture) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *capture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.body == nil {
		c.body = new([]byte)
	}
	*c.body = append(*c.body, p...)
	return len(p), nil
}

// ReadFrom is what io.Copy uses: it reads into the body with no buffer
// in between.
func (c *capture) ReadFrom(r io.Reader) (int64, error) {
	c.WriteHeader(http.StatusOK)
	if c.body == nil {
		c.body = new([]byte)
	}
	b := bytes.NewBuffer(*c.body)
	n, err := b.ReadFrom(r)
	*c.body = b.Bytes()
	return n, err
}

// release returns the body's buffer to bodies; the body is gone after.
func (c *capture) release() {
	*c.body = (*c.body)[:0]
	bodies.Put(c.body)
	c.body = nil
}
