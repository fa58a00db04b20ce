// Package record writes live streams to disk as HLS VOD recordings, one
// directory per broadcast, and finds the newest finished recording of a
// stream. It writes the segments the live output already made: it never
// encodes.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DirTime is the layout of a recording's directory name: its UTC start.
const DirTime = "20060102T150405Z"

// MetaFile marks a finished recording; it holds its Meta as JSON.
const MetaFile = "recording.json"

// IndexFile is a recording's multivariant playlist.
const IndexFile = "index.m3u8"

// PrivateFile marks, from its start, the recording of a private stream:
// the mark outlives a hard stop, which recording.json would not.
const PrivateFile = "private"

// ThumbFile is a recording's thumbnail (JPEG), if it has one.
const ThumbFile = "thumb.jpg"

// ErrNotFound is returned by Latest when a stream has no finished recording.
var ErrNotFound = errors.New("no finished recording")

// ErrEmpty is returned by Finish when no segment was recorded; the
// recording's directory is removed.
var ErrEmpty = errors.New("recording has no segments")

// The names a recording's paths are made of, checked without a regexp
// (ServeFile checks every request): a stream, ^[A-Za-z0-9_-]{1,64}$; a
// directory (a recording's or a rendition's), ^[A-Za-z0-9_-]{1,32}$; a
// file, ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$. None is "." or "..".
func validStream(s string) bool { return len(s) <= 64 && plain(s, false) }
func validDir(s string) bool    { return len(s) <= 32 && plain(s, false) }
func validFile(s string) bool {
	return len(s) <= 128 && plain(s, true) && s[0] != '.' && s[0] != '-'
}

// plain reports whether s is not empty and holds only A-Z a-z 0-9 _ - and,
// if dot, '.'.
func plain(s string, dot bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || dot && c == '.') {
			return false
		}
	}
	return s != ""
}

// Store holds the recordings of every stream under Dir, as
// Dir/{stream}/{UTC start, e.g. 20261201T084500Z}/: index.m3u8, one
// directory per rendition (init sections, segments, media playlists) and,
// once finished, recording.json. Set the fields and call Start.
type Store struct {
	// Dir is the recordings directory; required, created by Start.
	Dir string
	// Keep is how many recordings of one stream are kept; a new one deletes
	// the oldest beyond it. Default 5.
	Keep int
	// OpenFiles bounds the descriptors of recorded files that
	// Recording.ServeFile keeps open between requests, across every
	// recording (each request being answered holds one more, as without
	// them). Default DefaultOpenFiles; negative: none kept, each request
	// opens its file.
	OpenFiles int
	// Shared says other gateways write in Dir too (a cluster's one
	// volume): a broadcast one of them hands off goes on here in the same
	// recording (Continue), every gateway lists and serves every
	// recording, and an unfinished recording is finished (see
	// finishCutOff) only once untouched for CutOffAfter, as another
	// gateway may be writing it: at Start, then every CutOffAfter. Without
	// it, Start finishes every unfinished recording.
	Shared bool
	// CutOffAfter: see Shared; default 30 s.
	CutOffAfter time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	files *files // nil until Start
	stop  chan struct{}
	swept sync.WaitGroup
	once  sync.Once

	mu      sync.Mutex
	writing map[string]bool // the directories this Store's Writers write
}

// Start checks the settings, creates Dir and finishes the recordings that
// a gateway stopped hard left unfinished (see finishCutOff). A Dir belongs to
// one gateway. Whoever calls Start should call Close.
func (st *Store) Start() error {
	if st.Dir == "" {
		return errors.New("recordings directory not set")
	}
	if st.Keep == 0 {
		st.Keep = 5
	}
	if st.Keep < 1 {
		return fmt.Errorf("keep %d recordings: must be at least 1", st.Keep)
	}
	if st.OpenFiles == 0 {
		st.OpenFiles = DefaultOpenFiles
	}
	if st.Logger == nil {
		st.Logger = slog.Default()
	}
	if st.CutOffAfter == 0 {
		st.CutOffAfter = 30 * time.Second
	}
	if st.CutOffAfter < time.Second {
		return errors.New("recordings: CutOffAfter under 1 s")
	}
	st.files = newFiles(max(st.OpenFiles, 0))
	st.writing = map[string]bool{}
	st.stop = make(chan struct{})
	if err := os.MkdirAll(st.Dir, 0o755); err != nil {
		return fmt.Errorf("recordings directory: %w", err)
	}
	if !st.Shared {
		st.finishCutOff(0)
		return nil
	}
	st.finishCutOff(st.CutOffAfter)
	st.swept.Add(1)
	go func() {
		defer st.swept.Done()
		t := time.NewTicker(st.CutOffAfter)
		defer t.Stop()
		for {
			select {
			case <-st.stop:
				return
			case <-t.C:
				st.finishCutOff(st.CutOffAfter)
			}
		}
	}()
	return nil
}

// Close stops the sweep of a Shared Store and closes the descriptors kept
// open; the recordings are still served, each request opening its file.
// Idempotent.
func (st *Store) Close() {
	st.once.Do(func() {
		if st.stop != nil {
			close(st.stop)
		}
		st.swept.Wait()
		st.files.close()
	})
}

// track notes that a Writer of this Store writes dir (on false: no more).
func (st *Store) track(dir string, on bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if on {
		st.writing[dir] = true
	} else {
		delete(st.writing, dir)
	}
}

// written reports whether a Writer of this Store writes dir.
func (st *Store) written(dir string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writing[dir]
}

// Create starts a recording of stream that began at start, and deletes the
// stream's oldest recordings beyond Keep (the new one counted). Whoever
// gets a Writer must call Finish.
func (st *Store) Create(stream string, start time.Time, private bool) (*Writer, error) {
	if !validStream(stream) {
		return nil, fmt.Errorf("record stream %q: invalid name", stream)
	}
	parent := filepath.Join(st.Dir, stream)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("record stream %s: %w", stream, err)
	}
	name := start.UTC().Format(DirTime)
	dir := filepath.Join(parent, name)
	for i := 1; ; i++ { // a second broadcast within the same second
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return nil, fmt.Errorf("record stream %s: %w", stream, err)
		}
		dir = filepath.Join(parent, fmt.Sprintf("%s-%d", name, i))
	}
	st.prune(parent)
	if private {
		if err := os.WriteFile(filepath.Join(dir, PrivateFile), nil, 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("record stream %s: %w", stream, err)
		}
	}
	st.track(dir, true)
	return &Writer{dir: dir, st: st, files: st.files, meta: Meta{Stream: stream, StartedAt: start.UTC(), Private: private},
		log: st.Logger.With("stream", stream, "recording", filepath.Base(dir)), lists: map[string]*mediaList{}}, nil
}

// Continue reopens the recording named name (see Writer.Name) of stream,
// finished or not, for its broadcast, which goes on here: another gateway
// sharing Dir handed it off. The segments added next follow its own, the
// first of each media playlist marked a discontinuity, and Finish
// finishes it again. An error wrapping fs.ErrNotExist says Dir has no
// such recording (the gateways do not share one).
func (st *Store) Continue(stream, name string) (*Writer, error) {
	if !validStream(stream) || !validDir(name) {
		return nil, fmt.Errorf("continue recording %s/%s: invalid name", stream, name)
	}
	dir := filepath.Join(st.Dir, stream, name)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("continue recording: %w", err)
	}
	w, _, _, err := load(dir, stream, st.Logger.With("stream", stream, "recording", name))
	if err != nil && !errors.Is(err, ErrEmpty) {
		return nil, fmt.Errorf("continue recording %s: %w", dir, err)
	}
	w.st, w.files = st, st.files
	if err := os.Remove(filepath.Join(dir, MetaFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("continue recording: %w", err)
	}
	for _, key := range w.list {
		pl := w.lists[key]
		for i := range pl.entries {
			pl.entries[i].seq = 0 // never cut by alignEnds: they were aligned when handed off
		}
		pl.resumed = true
		if err := writeAtomic(pl.path, pl.render(false)); err != nil {
			return nil, fmt.Errorf("continue recording: %w", err)
		}
	}
	st.track(dir, true)
	w.log.Info("recording continued", "playlists", len(w.list))
	return w, nil
}

// recordings lists the recording directories of a stream, oldest first.
func recordings(parent string) []string {
	entries, _ := os.ReadDir(parent)
	var names []string
	for _, e := range entries {
		if e.IsDir() && validDir(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // UTC times: the order of their start
	return names
}

// prune deletes the oldest recordings in parent beyond Keep, and closes
// their descriptors first.
func (st *Store) prune(parent string) {
	names := recordings(parent)
	for len(names) > st.Keep {
		dir := filepath.Join(parent, names[0])
		st.files.forget(dir)
		err := os.RemoveAll(dir)
		st.files.forget(dir) // one opened while it was deleted
		if err != nil {
			st.Logger.Warn("delete old recording", "dir", dir, "error", err)
		} else {
			st.Logger.Info("deleted old recording", "dir", dir)
		}
		names = names[1:]
	}
}

// Streams lists the streams that have recordings (finished or not).
func (st *Store) Streams() []string {
	ents, _ := os.ReadDir(st.Dir)
	var names []string
	for _, e := range ents {
		if e.IsDir() && validStream(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// Latest returns the newest finished recording of stream, or ErrNotFound.
func (st *Store) Latest(stream string) (*Recording, error) {
	if !validStream(stream) {
		return nil, ErrNotFound
	}
	parent := filepath.Join(st.Dir, stream)
	names := recordings(parent)
	for i := len(names) - 1; i >= 0; i-- {
		dir := filepath.Join(parent, names[i])
		b, err := os.ReadFile(filepath.Join(dir, MetaFile))
		if err != nil {
			continue // not finished (still live, or the gateway stopped hard)
		}
		r := &Recording{dir: dir, files: st.files}
		if err := json.Unmarshal(b, &r.Meta); err != nil {
			st.Logger.Warn("recording metadata", "dir", dir, "error", err)
			continue
		}
		return r, nil
	}
	return nil, ErrNotFound
}

// Meta describes a finished recording (recording.json).
type Meta struct {
	Stream     string      `json:"stream"`
	StartedAt  time.Time   `json:"started_at"`
	EndedAt    time.Time   `json:"ended_at"`
	Duration   float64     `json:"duration"` // seconds of media of the first playlist
	Renditions []Rendition `json:"renditions"`
	// Private: only holders of a view token may watch it.
	Private bool `json:"private,omitempty"`
}

// Rendition describes one recorded rendition.
type Rendition struct {
	Name      string `json:"name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int    `json:"bandwidth"`
}

// Recording is a finished recording on disk.
type Recording struct {
	Meta
	dir   string
	files *files // its Store's; nil: each request opens its file
}

// Dir is the recording's directory.
func (r *Recording) Dir() string { return r.dir }

// Thumbnail returns the recording's thumbnail.
func (r *Recording) Thumbnail() ([]byte, error) {
	jpeg, err := os.ReadFile(filepath.Join(r.dir, ThumbFile))
	if err != nil {
		return nil, errors.New("the recording has no thumbnail") // the path is not the client's business
	}
	return jpeg, nil
}

// SetThumbnail writes the recording's thumbnail.
func (r *Recording) SetThumbnail(jpeg []byte) error {
	return writeAtomic(filepath.Join(r.dir, ThumbFile), jpeg)
}

// Multivariant returns the recording's multivariant playlist.
func (r *Recording) Multivariant() ([]byte, error) {
	return os.ReadFile(filepath.Join(r.dir, IndexFile))
}

// ServeFile serves "DIR/NAME" of a rendition of the recording, with the
// given Content-Type (the same for every request of a name); 404 for any
// other name. Playlists are not cached by clients (a new broadcast reuses
// their names), segments are (max-age=3600). Range, HEAD and conditional
// requests are answered as http.ServeContent answers them. The file's
// descriptor is kept open for the next request (see Store.OpenFiles).
func (r *Recording) ServeFile(w http.ResponseWriter, req *http.Request, file, contentType string) {
	dir, name, ok := strings.Cut(file, "/")
	if !ok || !validDir(dir) || !validFile(name) {
		http.NotFound(w, req)
		return
	}
	f, fd, err := r.files.get(filepath.Join(r.dir, dir, name), r.dir, contentType)
	if err != nil {
		httpError(w, req, err)
		return
	}
	defer r.files.put(f, fd)
	f.serve(w, req, fd)
}

// File is one file of a recording: its name in its rendition's directory
// and its bytes.
type File struct {
	Name string
	Data []byte
}

// Segment is one media segment to record: the rendition directory and
// media playlist it belongs to, its media sequence number, the segment and
// its init section (empty Name for none), and its EXTINF. Discontinuity
// marks the first segment of a resumed transcoder run.
type Segment struct {
	Rendition, Playlist string
	Sequence            uint64
	File, Init          File
	Duration            time.Duration
	Discontinuity       bool
}

// Writer writes one recording as its segments come. A disk error stops the
// recording (logged once); the caller's stream goes on. Safe for
// concurrent use.
type Writer struct {
	dir   string
	st    *Store // nil: finishing a cut-off recording
	files *files // the Store's, for the Recording
	log   *slog.Logger
	mu    sync.Mutex
	meta  Meta
	err   error    // the first disk error: nothing more is written
	done  bool     // finished: nothing more is written
	list  []string // media playlist keys in the order of their first segment
	// lists are the media playlists by "rendition/playlist".
	lists map[string]*mediaList
}

// mediaList is one media playlist being recorded.
type mediaList struct {
	path    string
	target  int // EXT-X-TARGETDURATION
	entries []entry
	resumed bool // continued (Store.Continue): the next segment is a discontinuity
}

type entry struct {
	seq        uint64
	name, init string
	duration   time.Duration
	discont    bool
}

// Dir is the recording's directory.
func (w *Writer) Dir() string { return w.dir }

// Name is the recording's name among its stream's (see Store.Continue).
func (w *Writer) Name() string { return filepath.Base(w.dir) }

// Err is the disk error that stopped the recording, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
		w.log.Error("recording stopped (the live stream goes on)", "error", err)
	}
}

// Add writes a segment, and its init section the first time, and appends
// the segment to its media playlist.
func (w *Writer) Add(seg Segment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.done {
		return
	}
	if err := w.add(seg); err != nil {
		w.fail(err)
	}
}

func (w *Writer) add(s Segment) error {
	rendition, playlist, seg, init := s.Rendition, s.Playlist, s.File, s.Init
	for _, name := range []string{playlist, seg.Name} {
		if !validFile(name) {
			return fmt.Errorf("record segment: invalid file name %q", name)
		}
	}
	if !validDir(rendition) || (init.Name != "" && !validFile(init.Name)) {
		return fmt.Errorf("record segment: invalid rendition %q or init %q", rendition, init.Name)
	}
	dir := filepath.Join(w.dir, rendition)
	key := rendition + "/" + playlist
	pl := w.lists[key]
	if pl == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		pl = &mediaList{path: filepath.Join(dir, playlist), target: 1}
		w.lists[key] = pl
		w.list = append(w.list, key)
	}
	if init.Name != "" {
		path := filepath.Join(dir, init.Name)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(path, init.Data, 0o644); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, seg.Name), seg.Data, 0o644); err != nil {
		return err
	}
	prev := ""
	if n := len(pl.entries); n > 0 {
		prev = pl.entries[n-1].init
	}
	e := entry{seq: s.Sequence, name: seg.Name, init: init.Name, duration: s.Duration,
		discont: (s.Discontinuity || pl.resumed) && len(pl.entries) > 0}
	pl.entries = append(pl.entries, e)
	pl.resumed = false
	if t := targetDuration(s.Duration); t > pl.target || len(pl.entries) == 1 {
		pl.target = max(pl.target, t)
		return writeAtomic(pl.path, pl.render(false)) // a new header
	}
	f, err := os.OpenFile(pl.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(e.render(prev))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// targetDuration is the EXT-X-TARGETDURATION a segment needs: its EXTINF
// rounded to the nearest second.
func targetDuration(d time.Duration) int {
	return max(1, int(math.Round(d.Seconds())))
}

// render writes the whole media playlist: EVENT while recording, VOD with
// #EXT-X-ENDLIST once finished.
func (pl *mediaList) render(finished bool) []byte {
	kind := "EVENT"
	if finished {
		kind = "VOD"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:%s\n#EXT-X-INDEPENDENT-SEGMENTS\n",
		pl.target, kind)
	prev := ""
	for _, e := range pl.entries {
		b.WriteString(e.render(prev))
		prev = e.init
	}
	if finished {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return []byte(b.String())
}

// render writes one segment's lines; prevInit is the init section of the
// segment before it.
func (e entry) render(prevInit string) string {
	var b strings.Builder
	if e.discont {
		b.WriteString("#EXT-X-DISCONTINUITY\n")
	}
	if e.init != "" && e.init != prevInit {
		fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", e.init)
	}
	fmt.Fprintf(&b, "#EXTINF:%.5f,\n%s\n", e.duration.Seconds(), e.name)
	return b.String()
}

// WriteIndex writes the multivariant playlist (URIs relative to the
// recording's directory, as the live one).
func (w *Writer) WriteIndex(body []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.done {
		return
	}
	if err := writeAtomic(filepath.Join(w.dir, IndexFile), body); err != nil {
		w.fail(err)
	}
}

// Finish turns the media playlists into VOD ones with #EXT-X-ENDLIST,
// writes the final multivariant playlist (nil keeps the one WriteIndex
// wrote) and the metadata that marks the
// recording finished, and returns it. It returns ErrEmpty (and removes the
// directory) when no segment came, or the error that stopped the recording.
func (w *Writer) Finish(index []byte, rends []Rendition, ended time.Time) (*Recording, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st != nil {
		w.st.track(w.dir, false)
	}
	if w.err != nil {
		return nil, w.err
	}
	if w.done {
		return nil, errors.New("recording already finished")
	}
	w.done = true
	if len(w.list) == 0 {
		if err := os.RemoveAll(w.dir); err != nil {
			w.log.Warn("remove empty recording", "error", err)
		}
		return nil, ErrEmpty
	}
	w.alignEnds()
	for _, key := range w.list {
		if err := writeAtomic(w.lists[key].path, w.lists[key].render(true)); err != nil {
			w.fail(err)
			return nil, err
		}
	}
	for _, e := range w.lists[w.list[0]].entries {
		w.meta.Duration += e.duration.Seconds()
	}
	w.meta.EndedAt, w.meta.Renditions = ended.UTC(), rends
	meta, _ := json.MarshalIndent(w.meta, "", "  ")
	for _, f := range []struct {
		name string
		body []byte
	}{{IndexFile, index}, {MetaFile, meta}} {
		if f.body == nil {
			continue // keep the multivariant playlist written while live
		}
		if err := writeAtomic(filepath.Join(w.dir, f.name), f.body); err != nil {
			w.fail(err)
			return nil, err
		}
	}
	w.log.Info("recording finished", "dir", w.dir, "duration", w.meta.Duration)
	return &Recording{Meta: w.meta, dir: w.dir, files: w.files}, nil
}

// alignEnds cuts the media playlists to the same last segment (a
// transcoder stopped mid-work may have finished one rendition further than
// another), so that a player switching renditions finds each segment in
// every one, and deletes the segments cut.
func (w *Writer) alignEnds() {
	var end uint64
	for i, key := range w.list {
		es := w.lists[key].entries
		if last := es[len(es)-1].seq + 1; i == 0 || last < end {
			end = last
		}
	}
	for _, key := range w.list {
		pl := w.lists[key]
		for len(pl.entries) > 1 && pl.entries[len(pl.entries)-1].seq >= end {
			cut := pl.entries[len(pl.entries)-1]
			pl.entries = pl.entries[:len(pl.entries)-1]
			if err := os.Remove(filepath.Join(filepath.Dir(pl.path), cut.name)); err != nil {
				w.log.Warn("delete cut segment", "error", err)
			}
		}
	}
}

// writeAtomic writes a file readers never see half written.
func writeAtomic(path string, body []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
