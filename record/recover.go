package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// finishCutOff finishes the recordings that a gateway stopped hard (killed, a
// crash, power) left without recording.json, so that they are served like
// any other: their media playlists become VOD with #EXT-X-ENDLIST, cut to
// the same number of segments, and their metadata is written, with the
// time of the last playlist write as the end. A recording without its
// multivariant playlist (no rendition had a segment yet) is removed, as an
// empty one is when it finishes. Those this Store writes are left alone,
// and so are those written to less than minAge ago (another gateway may
// be writing them).
func (st *Store) finishCutOff(minAge time.Duration) {
	for _, stream := range st.Streams() {
		parent := filepath.Join(st.Dir, stream)
		for _, name := range recordings(parent) {
			dir := filepath.Join(parent, name)
			if _, err := os.Stat(filepath.Join(dir, MetaFile)); err == nil || !errors.Is(err, os.ErrNotExist) {
				continue // finished, or not readable: left as it is
			}
			if st.written(dir) || minAge > 0 && time.Since(lastWrite(dir)) < minAge {
				continue
			}
			log := st.Logger.With("stream", stream, "recording", name)
			rec, err := recoverDir(dir, stream, log)
			switch {
			case errors.Is(err, ErrEmpty):
				log.Info("removed an unfinished recording with nothing to play")
			case err != nil:
				log.Warn("unfinished recording left as it is (not served)", "error", err)
			default:
				log.Info("finished a recording that was cut off", "duration", rec.Duration)
			}
		}
	}
}

// lastWrite is when a file was last added to the recording in dir: the
// latest change of its directory or of a rendition's (each segment is a
// new file).
func lastWrite(dir string) time.Time {
	var last time.Time
	if info, err := os.Stat(dir); err == nil {
		last = info.ModTime()
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.ModTime().After(last) {
			last = info.ModTime()
		}
	}
	return last
}

// recoverDir finishes the unfinished recording in dir from its files, or
// removes it if it has no multivariant playlist (ErrEmpty).
func recoverDir(dir, stream string, log *slog.Logger) (*Recording, error) {
	w, rends, ended, err := load(dir, stream, log)
	if errors.Is(err, ErrEmpty) {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	return w.Finish(nil, rends, ended)
}

// load rebuilds the Writer of the recording in dir from its files: the
// media playlists of the renditions its multivariant playlist lists, as
// readMediaList reads them; ended is their latest change. ErrEmpty, with
// a Writer of no playlist, when it has no multivariant playlist yet (no
// rendition had a segment).
func load(dir, stream string, log *slog.Logger) (w *Writer, rends []Rendition, ended time.Time, err error) {
	w = &Writer{dir: dir, log: log, lists: map[string]*mediaList{}}
	start, err := time.Parse(DirTime, strings.SplitN(filepath.Base(dir), "-", 2)[0])
	if err != nil {
		return nil, nil, ended, fmt.Errorf("directory name: %w", err)
	}
	_, err = os.Stat(filepath.Join(dir, PrivateFile))
	w.meta = Meta{Stream: stream, StartedAt: start, Private: err == nil}
	index, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return w, nil, ended, ErrEmpty
	}
	if err != nil {
		return nil, nil, ended, err
	}
	pl, err := playlist.Unmarshal(index)
	mv, ok := pl.(*playlist.Multivariant)
	if err != nil || !ok {
		return nil, nil, ended, fmt.Errorf("%s: not a multivariant playlist: %v", IndexFile, err)
	}
	for _, v := range mv.Variants {
		rend, file, ok := strings.Cut(v.URI, "/")
		if !ok || !validDir(rend) || !validFile(file) {
			return nil, nil, ended, fmt.Errorf("%s: variant %q", IndexFile, v.URI)
		}
		r := Rendition{Name: rend, Bandwidth: v.Bandwidth}
		fmt.Sscanf(v.Resolution, "%dx%d", &r.Width, &r.Height)
		rends = append(rends, r)
	}
	// every media playlist in the renditions' directories
	for _, r := range rends {
		names, _ := filepath.Glob(filepath.Join(dir, r.Name, "*.m3u8"))
		for _, path := range names {
			ml, mod, err := readMediaList(path)
			if err != nil {
				return nil, nil, ended, err
			}
			if len(ml.entries) == 0 {
				continue
			}
			key := r.Name + "/" + filepath.Base(path)
			w.lists[key] = ml
			w.list = append(w.list, key)
			if mod.After(ended) {
				ended = mod
			}
		}
	}
	return w, rends, ended, nil
}

// readMediaList parses a media playlist that Writer wrote while recording
// (see mediaList.render), up to its last complete segment line; it
// returns the playlist and its modification time. Entries are numbered
// from 0, so alignEnds cuts every playlist to the shortest.
func readMediaList(path string) (*mediaList, time.Time, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
		body = body[:i+1] // a line cut by the stop is dropped
	} else {
		body = nil
	}
	ml := &mediaList{path: path, target: 1}
	var init string
	var dur time.Duration
	discont, inf := false, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			ml.target, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"))
			ml.target = max(ml.target, 1)
		case line == "#EXT-X-DISCONTINUITY":
			discont = true
		case strings.HasPrefix(line, "#EXT-X-MAP:URI="):
			init, err = strconv.Unquote(strings.TrimPrefix(line, "#EXT-X-MAP:URI="))
			if err != nil || !validFile(init) {
				return nil, time.Time{}, fmt.Errorf("%s: %q", path, line)
			}
		case strings.HasPrefix(line, "#EXTINF:"):
			secs, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(line, "#EXTINF:"), ","), 64)
			if err != nil || secs < 0 || secs > 3600 {
				return nil, time.Time{}, fmt.Errorf("%s: %q", path, line)
			}
			dur, inf = time.Duration(secs*float64(time.Second)), true
		case line != "" && !strings.HasPrefix(line, "#"):
			if !inf || !validFile(line) {
				return nil, time.Time{}, fmt.Errorf("%s: segment %q", path, line)
			}
			ml.entries = append(ml.entries, entry{seq: uint64(len(ml.entries)), name: line, init: init,
				duration: dur, discont: discont})
			discont, inf = false, false
		}
	}
	return ml, info.ModTime(), nil
}
