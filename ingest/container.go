package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Container is the media container a publisher sends.
type Container int

// The containers Sniff recognises.
const (
	ContainerUnknown Container = iota
	ContainerWebM              // EBML: WebM or Matroska (Chrome, Firefox, Edge)
	ContainerMP4               // ISO BMFF starting with ftyp: fragmented MP4 (Safari)
)

// String returns "webm", "mp4" or "unknown".
func (c Container) String() string {
	switch c {
	case ContainerWebM:
		return "webm"
	case ContainerMP4:
		return "mp4"
	}
	return "unknown"
}

// ErrUnknownContainer is returned by Sniff for bytes that start neither an
// EBML (WebM/Matroska) stream nor an MP4 one, and by VideoSize for a
// Container it does not know.
var ErrUnknownContainer = errors.New("unknown container")

// ErrNoVideoSize is returned by VideoSize when the header shows that it holds
// no video size: no video track (audio only), or media before the track
// descriptions.
var ErrNoVideoSize = errors.New("no video size in the header")

// MaxVideoSide is the largest width or height VideoSize accepts.
const MaxVideoSide = 16384

// ebmlMagic is the ID of the EBML header element that starts WebM/Matroska.
const ebmlMagic = "\x1A\x45\xDF\xA3"

// Sniff recognises the container from the first bytes of a stream, which may
// have arrived across many tiny frames. It returns needMore=true while head
// is too short to decide (an empty head included), and ErrUnknownContainer
// as soon as head cannot start a WebM/Matroska or MP4 (ftyp) stream.
func Sniff(head []byte) (c Container, needMore bool, err error) {
	if len(head) == 0 {
		return ContainerUnknown, true, nil
	}
	// WebM/Matroska: the EBML header's ID.
	if n := min(len(head), 4); ebmlMagic[:n] == string(head[:n]) {
		if n < 4 {
			return ContainerUnknown, true, nil
		}
		return ContainerWebM, false, nil
	}
	// MP4: a first box of type ftyp whose 32-bit size is 8 to 65535.
	if head[0] != 0 || len(head) > 1 && head[1] != 0 {
		return ContainerUnknown, false, ErrUnknownContainer
	}
	if len(head) >= 4 && binary.BigEndian.Uint32(head) < 8 {
		return ContainerUnknown, false, ErrUnknownContainer
	}
	for i := 4; i < min(len(head), 8); i++ {
		if head[i] != "ftyp"[i-4] {
			return ContainerUnknown, false, ErrUnknownContainer
		}
	}
	if len(head) < 8 {
		return ContainerUnknown, true, nil
	}
	return ContainerMP4, false, nil
}

// VideoSize reads the coded width and height of the first video track from
// the container header at the start of head. For WebM/Matroska these are
// the Video element's PixelWidth and PixelHeight; for MP4 the video sample
// entry's width and height (the track header's, if those are zero), swapped
// when the track header's matrix turns the picture by 90 degrees, as ffmpeg
// does when it decodes.
//
// It returns needMore=true when head ends before the answer,
// ErrNoVideoSize when the header shows there is none, and another error for
// a malformed header. Sizes read from the stream are never trusted: every
// length is checked against its container and capped, and any input gives an
// answer without panicking. An answer, once given for a prefix, is the answer
// for any longer head. Callers bound how much head they collect.
func VideoSize(c Container, head []byte) (w, h int, needMore bool, err error) {
	switch c {
	case ContainerWebM:
		w, h, err = webmVideoSize(head)
	case ContainerMP4:
		w, h, err = mp4VideoSize(head)
	default:
		return 0, 0, false, ErrUnknownContainer
	}
	if errors.Is(err, errNeedMore) {
		return 0, 0, true, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	if w < 1 || h < 1 || w > MaxVideoSide || h > MaxVideoSide {
		return 0, 0, false, fmt.Errorf("ingest: %s: video size %dx%d out of range 1 to %d", c, w, h, MaxVideoSide)
	}
	return w, h, false, nil
}

// errNeedMore reports, inside this file, that the bytes ended too soon.
var errNeedMore = errors.New("need more bytes")

// Caps on the sizes of elements and boxes walked or skipped on the way to
// the video size: larger ones are malformed or not from a browser.
const (
	maxSkip    = 16 << 20 // any element or box skipped whole
	maxHeader  = 64 << 10 // the EBML header; an MP4 track's boxes
	maxMoov    = 8 << 20  // an MP4 moov box, read whole
	unknownLen = math.MaxUint64
)

// Matroska element IDs used here.
const (
	idEBML        = 0x1A45DFA3
	idSegment     = 0x18538067
	idTracks      = 0x1654AE6B
	idTrackEntry  = 0xAE
	idVideo       = 0xE0
	idPixelWidth  = 0xB0
	idPixelHeight = 0xBA
	idCluster     = 0x1F43B675
	idVoid        = 0xEC
	idCRC32       = 0xBF
)

// isSegmentChild reports whether id is a top-level element of a Segment,
// which ends an unknown-size Tracks element.
func isSegmentChild(id uint32) bool {
	switch id {
	case idSegment, idEBML, idTracks, idCluster,
		0x114D9B74, // SeekHead
		0x1549A966, // Info
		0x1C53BB6B, // Cues
		0x1941A469, // Attachments
		0x1043A770, // Chapters
		0x1254C367: // Tags
		return true
	}
	return false
}

// element is the header of one EBML element.
type element struct {
	id    uint32
	start int    // offset of its data
	size  uint64 // unknownLen when the size is unknown
}

// end returns the offset after the element's data, or limit for an unknown
// size. It fails if the data would pass limit.
func (e element) end(limit int) (int, error) {
	if e.size == unknownLen {
		return limit, nil
	}
	if e.size > uint64(limit-e.start) {
		return 0, fmt.Errorf("ingest: webm: element %#x at %d: size %d passes its parent's end %d", e.id, e.start, e.size, limit)
	}
	return e.start + int(e.size), nil
}

// readElement reads the element header at b[off:].
func readElement(b []byte, off int) (element, error) {
	id, n, err := readVint(b, off, true)
	if err != nil {
		return element{}, err
	}
	if n > 4 {
		return element{}, fmt.Errorf("ingest: webm: element ID at %d longer than 4 bytes", off)
	}
	size, m, err := readVint(b, off+n, false)
	if err != nil {
		return element{}, err
	}
	return element{id: uint32(id), start: off + n + m, size: size}, nil
}

// readVint reads an EBML variable-length integer at b[off:]: with its
// length marker for IDs, without it for sizes (all ones mean unknown).
func readVint(b []byte, off int, marker bool) (v uint64, n int, err error) {
	if off >= len(b) {
		return 0, 0, errNeedMore
	}
	first := b[off]
	if first == 0 {
		return 0, 0, fmt.Errorf("ingest: webm: invalid variable-length integer at %d", off)
	}
	n = 1
	for mask := byte(0x80); first&mask == 0; mask >>= 1 {
		n++
	}
	if off+n > len(b) {
		return 0, 0, errNeedMore
	}
	v = uint64(first)
	if !marker {
		v &= 0xFF >> n
	}
	allOnes := v == 0xFF>>n
	for _, c := range b[off+1 : off+n] {
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xFF
	}
	if !marker && allOnes {
		return unknownLen, n, nil
	}
	return v, n, nil
}

// webmVideoSize walks EBML header, Segment, Tracks, TrackEntry, Video.
func webmVideoSize(b []byte) (w, h int, err error) {
	e, err := readElement(b, 0)
	if err != nil {
		return 0, 0, err
	}
	if e.id != idEBML {
		return 0, 0, fmt.Errorf("ingest: webm: starts with element %#x, not the EBML header", e.id)
	}
	if e.size == unknownLen || e.size > maxHeader {
		return 0, 0, fmt.Errorf("ingest: webm: EBML header size %d", e.size)
	}
	off := e.start + int(e.size)
	// Top level: Void or CRC-32 may come before the Segment.
	for {
		e, err = readElement(b, off)
		if err != nil {
			return 0, 0, err
		}
		if e.id == idSegment {
			break
		}
		if e.id != idVoid && e.id != idCRC32 {
			return 0, 0, fmt.Errorf("ingest: webm: element %#x at %d where the Segment should start", e.id, off)
		}
		if off, err = skip(e); err != nil {
			return 0, 0, err
		}
	}
	segEnd := math.MaxInt
	if e.size != unknownLen {
		segEnd = e.start + int(min(e.size, maxSegment))
	}
	for off = e.start; off < segEnd; {
		e, err = readElement(b, off)
		if err != nil {
			return 0, 0, err
		}
		switch e.id {
		case idTracks:
			return webmTracks(b, e, segEnd)
		case idCluster:
			return 0, 0, fmt.Errorf("ingest: webm: media before the track descriptions: %w", ErrNoVideoSize)
		}
		if off, err = skip(e); err != nil {
			return 0, 0, err
		}
		if off > segEnd {
			return 0, 0, fmt.Errorf("ingest: webm: element %#x passes its Segment", e.id)
		}
	}
	return 0, 0, fmt.Errorf("ingest: webm: segment ended without tracks: %w", ErrNoVideoSize)
}

// maxSegment caps a Segment's declared size so offsets cannot overflow.
const maxSegment = 1 << 50

// skip returns the offset after e, an element skipped whole.
func skip(e element) (int, error) {
	if e.size == unknownLen || e.size > maxSkip {
		return 0, fmt.Errorf("ingest: webm: element %#x at %d: size %d cannot be skipped", e.id, e.start, e.size)
	}
	return e.start + int(e.size), nil
}

// webmTracks finds the first TrackEntry with a Video element in tracks.
func webmTracks(b []byte, tracks element, parentEnd int) (w, h int, err error) {
	end, err := tracks.end(parentEnd)
	if err != nil {
		return 0, 0, err
	}
	for off := tracks.start; off < end; {
		e, err := readElement(b, off)
		if err != nil {
			return 0, 0, err
		}
		if tracks.size == unknownLen && isSegmentChild(e.id) {
			break // an unknown-size Tracks ends where the next top-level element starts
		}
		if e.id == idTrackEntry {
			if e.size == unknownLen {
				return 0, 0, fmt.Errorf("ingest: webm: TrackEntry at %d of unknown size", off)
			}
			w, h, err := webmTrackEntry(b, e, end)
			if !errors.Is(err, ErrNoVideoSize) {
				return w, h, err
			}
		}
		if off, err = skip(e); err != nil {
			return 0, 0, err
		}
		if off > end {
			return 0, 0, fmt.Errorf("ingest: webm: element %#x passes its Tracks", e.id)
		}
	}
	return 0, 0, fmt.Errorf("ingest: webm: no video track: %w", ErrNoVideoSize)
}

// webmTrackEntry returns the size in entry's Video element, or
// ErrNoVideoSize if it has none.
func webmTrackEntry(b []byte, entry element, parentEnd int) (w, h int, err error) {
	end, err := entry.end(parentEnd)
	if err != nil {
		return 0, 0, err
	}
	for off := entry.start; off < end; {
		e, err := readElement(b, off)
		if err != nil {
			return 0, 0, err
		}
		if e.id == idVideo {
			return webmVideo(b, e, end)
		}
		if off, err = skip(e); err != nil {
			return 0, 0, err
		}
		if off > end {
			return 0, 0, fmt.Errorf("ingest: webm: element %#x passes its TrackEntry", e.id)
		}
	}
	return 0, 0, ErrNoVideoSize
}

// webmVideo reads PixelWidth and PixelHeight from a Video element.
func webmVideo(b []byte, video element, parentEnd int) (w, h int, err error) {
	end, err := video.end(parentEnd)
	if err != nil {
		return 0, 0, err
	}
	for off := video.start; off < end; {
		e, err := readElement(b, off)
		if err != nil {
			return 0, 0, err
		}
		if e.id == idPixelWidth || e.id == idPixelHeight {
			if e.size < 1 || e.size > 8 {
				return 0, 0, fmt.Errorf("ingest: webm: pixel size element %#x of %d bytes", e.id, e.size)
			}
			if e.start+int(e.size) > end {
				return 0, 0, fmt.Errorf("ingest: webm: pixel size element %#x passes its Video element", e.id)
			}
			if e.start+int(e.size) > len(b) {
				return 0, 0, errNeedMore
			}
			var v uint64
			for _, c := range b[e.start : e.start+int(e.size)] {
				v = v<<8 | uint64(c)
			}
			v = min(v, MaxVideoSide+1) // out of range, reported by VideoSize
			if e.id == idPixelWidth {
				w = int(v)
			} else {
				h = int(v)
			}
			if w > 0 && h > 0 {
				return w, h, nil
			}
		}
		if off, err = skip(e); err != nil {
			return 0, 0, err
		}
		if off > end {
			return 0, 0, fmt.Errorf("ingest: webm: element %#x passes its Video element", e.id)
		}
	}
	return 0, 0, fmt.Errorf("ingest: webm: Video element without PixelWidth and PixelHeight")
}

// box is one ISO BMFF box: its type and its data.
type box struct {
	typ  string
	data []byte
}

// mp4VideoSize finds the moov box and reads its first video track.
func mp4VideoSize(b []byte) (w, h int, err error) {
	for off := 0; ; {
		if off >= len(b) {
			return 0, 0, errNeedMore
		}
		typ, hdr, size, err := boxHeader(b[off:])
		if err != nil {
			return 0, 0, err
		}
		switch typ {
		case "moov":
			if size > maxMoov {
				return 0, 0, fmt.Errorf("ingest: mp4: moov box of %d bytes", size)
			}
			if uint64(len(b)-off) < size {
				return 0, 0, errNeedMore
			}
			return mp4Moov(b[off+hdr : off+int(size)])
		case "moof", "mdat":
			return 0, 0, fmt.Errorf("ingest: mp4: %s before moov: %w", typ, ErrNoVideoSize)
		}
		if size > maxSkip {
			return 0, 0, fmt.Errorf("ingest: mp4: %q box of %d bytes cannot be skipped", typ, size)
		}
		off += int(size)
	}
}

// boxHeader reads a top-level box header: its type, header length and
// whole size. A box "to the end of the file" (size 0) cannot be skipped in a
// live stream, so it is an error.
func boxHeader(b []byte) (typ string, hdr int, size uint64, err error) {
	if len(b) < 8 {
		return "", 0, 0, errNeedMore
	}
	size, typ, hdr = uint64(binary.BigEndian.Uint32(b)), string(b[4:8]), 8
	if size == 1 {
		if len(b) < 16 {
			return "", 0, 0, errNeedMore
		}
		size, hdr = binary.BigEndian.Uint64(b[8:]), 16
	}
	if size < uint64(hdr) {
		return "", 0, 0, fmt.Errorf("ingest: mp4: %q box of size %d", typ, size)
	}
	return typ, hdr, size, nil
}

// children splits data, which must be whole, into boxes.
func children(data []byte) ([]box, error) {
	var boxes []box
	for len(data) > 0 {
		if len(data) < 8 {
			return nil, fmt.Errorf("ingest: mp4: %d stray bytes in a box", len(data))
		}
		size, typ, hdr := uint64(binary.BigEndian.Uint32(data)), string(data[4:8]), 8
		switch size {
		case 0: // to the end of the parent
			size = uint64(len(data))
		case 1:
			if len(data) < 16 {
				return nil, fmt.Errorf("ingest: mp4: %q box cut short", typ)
			}
			size, hdr = binary.BigEndian.Uint64(data[8:]), 16
		}
		if size < uint64(hdr) || size > uint64(len(data)) {
			return nil, fmt.Errorf("ingest: mp4: %q box of size %d in %d bytes", typ, size, len(data))
		}
		boxes = append(boxes, box{typ: typ, data: data[hdr:size]})
		data = data[size:]
	}
	return boxes, nil
}

// child returns the data of the first box of type typ in data.
func child(data []byte, typ string) ([]byte, bool, error) {
	boxes, err := children(data)
	if err != nil {
		return nil, false, err
	}
	for _, b := range boxes {
		if b.typ == typ {
			return b.data, true, nil
		}
	}
	return nil, false, nil
}

// mp4Moov returns the size of the first video track in a moov box's data.
func mp4Moov(moov []byte) (w, h int, err error) {
	boxes, err := children(moov)
	if err != nil {
		return 0, 0, err
	}
	for _, b := range boxes {
		if b.typ != "trak" {
			continue
		}
		w, h, err := mp4Trak(b.data)
		if !errors.Is(err, ErrNoVideoSize) {
			return w, h, err
		}
	}
	return 0, 0, fmt.Errorf("ingest: mp4: no video track: %w", ErrNoVideoSize)
}

// mp4Trak returns the size of a video track, or ErrNoVideoSize for another.
func mp4Trak(trak []byte) (w, h int, err error) {
	mdia, ok, err := child(trak, "mdia")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, ErrNoVideoSize
	}
	hdlr, ok, err := child(mdia, "hdlr")
	if err != nil {
		return 0, 0, err
	}
	// hdlr: version and flags (4), pre_defined (4), handler_type (4).
	if !ok || len(hdlr) < 12 || string(hdlr[8:12]) != "vide" {
		return 0, 0, ErrNoVideoSize
	}
	// Sample entry: moov/trak/mdia/minf/stbl/stsd, first entry.
	data := mdia
	for _, typ := range []string{"minf", "stbl", "stsd"} {
		if data, ok, err = child(data, typ); err != nil {
			return 0, 0, err
		} else if !ok {
			break
		}
	}
	if ok && len(data) >= 8 {
		// stsd: version and flags (4), entry_count (4), entries.
		entries, err := children(data[8:])
		if err != nil {
			return 0, 0, err
		}
		// VisualSampleEntry: reserved (6), data_reference_index (2),
		// pre_defined and reserved (16), width (2), height (2).
		if len(entries) > 0 && len(entries[0].data) >= 28 {
			e := entries[0].data
			w, h = int(binary.BigEndian.Uint16(e[24:])), int(binary.BigEndian.Uint16(e[26:]))
		}
	}
	tkhd, ok, err := child(trak, "tkhd")
	if err != nil {
		return 0, 0, err
	}
	if ok {
		tw, th, turned, err := parseTkhd(tkhd)
		if err != nil {
			return 0, 0, err
		}
		if w == 0 || h == 0 {
			w, h = tw, th
		}
		if turned {
			w, h = h, w
		}
	}
	if w == 0 || h == 0 {
		return 0, 0, fmt.Errorf("ingest: mp4: video track without a size")
	}
	return w, h, nil
}

// parseTkhd reads a track header's width and height (16.16 fixed point) and
// whether its matrix turns the picture by 90 or 270 degrees.
func parseTkhd(tkhd []byte) (w, h int, turned bool, err error) {
	if len(tkhd) < 1 {
		return 0, 0, false, fmt.Errorf("ingest: mp4: empty tkhd")
	}
	// Version 0: times and duration of 32 bits, version 1: of 64 bits.
	matrix := 40
	if tkhd[0] == 1 {
		matrix = 52
	}
	if len(tkhd) < matrix+44 {
		return 0, 0, false, fmt.Errorf("ingest: mp4: tkhd of %d bytes", len(tkhd))
	}
	m := func(i int) int32 { return int32(binary.BigEndian.Uint32(tkhd[matrix+4*i:])) }
	turned = m(0) == 0 && m(4) == 0 && m(1) != 0 && m(3) != 0
	w = int(binary.BigEndian.Uint32(tkhd[matrix+36:]) >> 16)
	h = int(binary.BigEndian.Uint32(tkhd[matrix+40:]) >> 16)
	return w, h, turned, nil
}
