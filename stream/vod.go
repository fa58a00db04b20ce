package stream

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/livegate/livegate/record"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/web"
)

// recordingDir holds an ended stream's finished recording under
// /live/{stream}/ while its last window is still served: a new viewer gets
// the whole broadcast, a player of the window keeps its playlists. A
// rendition's directory cannot contain a dot, so the names never meet.
const recordingDir = "recording.d/"

// vod is a finished recording served as the stream.
type vod struct{ rec *record.Recording }

// ready is a closed channel: a recording is always ready.
var ready = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Info implements web.Stream.
func (v vod) Info() web.StreamInfo {
	started, ended := v.rec.StartedAt, v.rec.EndedAt
	info := web.StreamInfo{Name: v.rec.Stream, StartedAt: started, EndedAt: &ended, Private: v.rec.Private,
		Recording: true, RecordedAt: &started, Duration: v.rec.Duration}
	for _, r := range v.rec.Renditions {
		info.Renditions = append(info.Renditions, web.RenditionInfo(r))
	}
	return info
}

// Ready implements web.Stream.
func (v vod) Ready() <-chan struct{} { return ready }

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

// Private implements web.Stream: the recording of a private stream is
// private.
func (v vod) Private() bool { return v.rec.Private }
