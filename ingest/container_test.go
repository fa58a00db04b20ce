package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ebmlID encodes an element ID (its length marker included).
func ebmlID(id uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// el builds an EBML element with an 8-byte size.
func el(id uint32, body ...[]byte) []byte {
	data := bytes.Join(body, nil)
	size := binary.BigEndian.AppendUint64(nil, uint64(len(data)))
	size[0] = 0x01
	return append(append(ebmlID(id), size...), data...)
}

// unknownSize builds the header of an element of unknown size.
func unknownSize(id uint32) []byte {
	return append(ebmlID(id), 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
}

// uintEl builds an unsigned integer element.
func uintEl(id uint32, v uint64) []byte {
	return el(id, binary.BigEndian.AppendUint64(nil, v)[6:])
}

// ebmlHeader is a WebM EBML header.
func ebmlHeader() []byte {
	return el(idEBML, el(0x4282, []byte("webm")), uintEl(0x4287, 4), uintEl(0x4285, 2))
}

// videoTrack and audioTrack build TrackEntry elements.
func videoTrack(w, h uint64) []byte {
	return el(idTrackEntry, uintEl(0xD7, 1), uintEl(0x83, 1), el(0x86, []byte("V_VP8")),
		el(idVideo, uintEl(idPixelWidth, w), uintEl(idPixelHeight, h)))
}

func audioTrack() []byte {
	return el(idTrackEntry, uintEl(0xD7, 2), uintEl(0x83, 2), el(0x86, []byte("A_OPUS")),
		el(0xE1, uintEl(0x9F, 2)))
}

// mp4Box builds an ISO BMFF box.
func mp4Box(typ string, body ...[]byte) []byte {
	data := bytes.Join(body, nil)
	return append(append(binary.BigEndian.AppendUint32(nil, uint32(8+len(data))), typ...), data...)
}

// sample is a stream start and what VideoSize must say about it.
type sample struct {
	name      string
	data      []byte
	container Container
	w, h      int
	err       error // ErrNoVideoSize, or nil
}

// handMade returns stream starts built here, covering what ffmpeg does not
// write.
func handMade() []sample {
	cluster := append(unknownSize(idCluster), el(0xE7, []byte{0})...)
	info := el(0x1549A966, uintEl(0x2AD7B1, 1000000))
	void := el(idVoid, make([]byte, 10))
	ftyp := mp4Box("ftyp", []byte("isom\x00\x00\x02\x00isomiso6mp41"))
	return []sample{
		{"webm unknown-size tracks, audio first", bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment), info,
			unknownSize(idTracks), audioTrack(), void, videoTrack(1216, 2160), cluster}, nil), ContainerWebM, 1216, 2160, nil},
		{"webm known sizes, void before segment", bytes.Join([][]byte{ebmlHeader(), void,
			el(idSegment, info, el(idTracks, videoTrack(640, 480)))}, nil), ContainerWebM, 640, 480, nil},
		{"webm cluster before tracks", bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment), info, cluster}, nil),
			ContainerWebM, 0, 0, ErrNoVideoSize},
		{"webm unknown-size tracks, audio only", bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment),
			unknownSize(idTracks), audioTrack(), cluster}, nil), ContainerWebM, 0, 0, ErrNoVideoSize},
		{"webm segment without tracks", bytes.Join([][]byte{ebmlHeader(), el(idSegment, info)}, nil),
			ContainerWebM, 0, 0, ErrNoVideoSize},
		{"mp4 moof before moov", bytes.Join([][]byte{ftyp, mp4Box("moof", mp4Box("mfhd", make([]byte, 8)))}, nil),
			ContainerMP4, 0, 0, ErrNoVideoSize},
		{"mp4 empty moov", bytes.Join([][]byte{ftyp, mp4Box("free"), mp4Box("moov", mp4Box("mvhd", make([]byte, 100)))}, nil),
			ContainerMP4, 0, 0, ErrNoVideoSize},
	}
}

// chromeMade returns the first 4 KiB of MediaRecorder recordings by
// Chromium 156 with its fake camera (timeslice 100 ms; the first chunk was
// one byte each time). The audio track comes first; the portrait 720x1280
// request came out as 1216x2160.
func chromeMade(t testing.TB) []sample {
	var out []sample
	for _, s := range []sample{
		{name: "chrome vp8", w: 1280, h: 720},
		{name: "chrome vp9", w: 640, h: 480},
		{name: "chrome h264 portrait", w: 1216, h: 2160},
	} {
		codec := strings.Fields(s.name)[1]
		data, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("chrome-%s-%dx%d.webm", codec, s.w, s.h)))
		if err != nil {
			t.Fatal(err)
		}
		s.data, s.container = data, ContainerWebM
		out = append(out, s)
	}
	return out
}

// encoded describes a stream start made by ffmpeg from lavfi sources.
type encoded struct {
	name   string
	w, h   int // video size; 0 for audio only
	audio  bool
	codecs []string // ffmpeg codec options
	format string   // ffmpeg muxer
	pipe   bool     // write to a pipe, as live, not to a file
	rotate bool     // set the MP4 track matrix to turn 90 degrees
}

// ffmpegMade makes stream starts with ffmpeg in dir, or returns nil when
// ffmpeg is not installed.
func ffmpegMade(tb testing.TB, dir string) []sample {
	tb.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		tb.Logf("ffmpeg is not installed: only hand-made headers are tested (%v)", err)
		return nil
	}
	vp8 := []string{"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"}
	vp9 := []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"}
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "libopus"}
	fmp4 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
		"-movflags", "frag_keyframe+empty_moov+default_base_moof"}
	list := []encoded{
		{"webm vp8 720p file", 1280, 720, true, vp8, "webm", false, false},
		{"webm vp8 720p live", 1280, 720, true, vp8, "webm", true, false},
		{"webm vp8 portrait live", 720, 1280, true, vp8, "webm", true, false},
		{"webm vp8 odd size", 641, 361, false, vp8, "webm", true, false},
		{"webm vp9 live", 640, 480, true, vp9, "webm", true, false},
		{"matroska h264 live", 1280, 720, true, h264, "matroska", true, false},
		{"matroska h264 portrait file", 360, 640, true, h264, "matroska", false, false},
		{"fmp4 h264 720p", 1280, 720, true, fmp4, "mp4", true, false},
		{"fmp4 h264 portrait", 720, 1280, true, fmp4, "mp4", true, false},
		{"fmp4 h264 turned 90", 640, 360, true, fmp4, "mp4", true, true},
		{"webm audio only", 0, 0, true, vp8, "webm", true, false},
		{"fmp4 audio only", 0, 0, true, fmp4, "mp4", true, false},
	}
	out := make([]sample, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, e := range list {
		wg.Go(func() {
			out[i], errs[i] = e.make(filepath.Join(dir, fmt.Sprintf("%d.%s", i, e.format)))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return out
}

// make runs ffmpeg to write e to path and returns it as a sample.
func (e encoded) make(path string) (sample, error) {
	args := []string{"-hide_banner", "-loglevel", "error"}
	if e.w > 0 {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%dx%d:rate=30", e.w, e.h))
	}
	if e.audio {
		args = append(args, "-f", "lavfi", "-i", "sine=sample_rate=48000")
	}
	args = append(append(append(args, "-t", "0.1"), e.codecs...), "-f", e.format)
	cmd := exec.Command("ffmpeg", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var err error
	if e.pipe {
		var f *os.File
		if f, err = os.Create(path); err != nil {
			return sample{}, err
		}
		cmd.Args = append(cmd.Args, "pipe:1")
		cmd.Stdout = f
		err = errors.Join(cmd.Run(), f.Close())
	} else {
		cmd.Args = append(cmd.Args, "-y", path)
		err = cmd.Run()
	}
	if err != nil {
		return sample{}, fmt.Errorf("%s: %v: %w: %s", e.name, cmd.Args, err, stderr.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sample{}, err
	}
	s := sample{name: e.name, data: data, container: ContainerWebM, w: e.w, h: e.h}
	if e.format == "mp4" {
		s.container = ContainerMP4
	}
	if e.w == 0 {
		s.err = ErrNoVideoSize
	}
	if e.rotate {
		if err := turnMP4(s.data); err != nil {
			return sample{}, err
		}
		s.w, s.h = e.h, e.w
	}
	return s, nil
}

// turnMP4 sets the matrix of the first tkhd in data to a 90 degree turn,
// as an iPhone does for a portrait recording; ffmpeg then decodes the
// picture turned.
func turnMP4(data []byte) error {
	i := bytes.Index(data, []byte("tkhd"))
	if i < 0 || data[i+4] != 0 {
		return errors.New("no version 0 tkhd")
	}
	matrix := data[i+4+40:]
	for j, v := range []int32{0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000} {
		binary.BigEndian.PutUint32(matrix[4*j:], uint32(v))
	}
	return nil
}

// checkAnswer checks one VideoSize answer against the sample.
func checkAnswer(t *testing.T, s sample, w, h int, needMore bool, err error) {
	t.Helper()
	switch {
	case needMore:
		t.Errorf("needMore for the whole sample (%d bytes)", len(s.data))
	case s.err != nil && !errors.Is(err, s.err):
		t.Errorf("VideoSize = %dx%d, %v; want %v", w, h, err, s.err)
	case s.err == nil && (err != nil || w != s.w || h != s.h):
		t.Errorf("VideoSize = %dx%d, %v; want %dx%d", w, h, err, s.w, s.h)
	}
}

var fuzzSeeds = flag.Bool("fuzzseeds", false, "rewrite testdata/fuzz/FuzzVideoSize from ffmpeg-made samples")

func TestVideoSize(t *testing.T) {
	made := ffmpegMade(t, t.TempDir())
	if *fuzzSeeds {
		writeSeeds(t, made)
	}
	samples := append(append(handMade(), chromeMade(t)...), made...)
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			c, needMore, err := Sniff(s.data)
			if c != s.container || needMore || err != nil {
				t.Fatalf("Sniff = %v, %v, %v; want %v", c, needMore, err, s.container)
			}
			w, h, needMore, err := VideoSize(c, s.data)
			checkAnswer(t, s, w, h, needMore, err)

			// Every prefix: needMore until the answer, then the same answer.
			decided := -1
			for n := range min(len(s.data), 64<<10) {
				pw, ph, pMore, perr := VideoSize(c, s.data[:n])
				if pMore {
					if decided >= 0 {
						t.Fatalf("needMore at %d bytes after answering at %d", n, decided)
					}
					continue
				}
				if decided < 0 {
					decided = n
				}
				if pw != w || ph != h || (perr == nil) != (err == nil) || perr != nil && perr.Error() != err.Error() {
					t.Fatalf("prefix of %d bytes: %dx%d, %v; whole: %dx%d, %v", n, pw, ph, perr, w, h, err)
				}
			}
			t.Logf("%d bytes decide (of %d)", decided, len(s.data))
		})
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		head     string
		want     Container
		needMore bool
		err      error
	}{
		{"", ContainerUnknown, true, nil},
		{"\x1A", ContainerUnknown, true, nil},
		{"\x1A\x45\xDF", ContainerUnknown, true, nil},
		{"\x1A\x45\xDF\xA3", ContainerWebM, false, nil},
		{"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01", ContainerWebM, false, nil},
		{"\x00", ContainerUnknown, true, nil},
		{"\x00\x00\x00\x1C", ContainerUnknown, true, nil},
		{"\x00\x00\x00\x1Cft", ContainerUnknown, true, nil},
		{"\x00\x00\x00\x1Cftyp", ContainerMP4, false, nil},
		{"\x00\x00\x00\x1Cftypmp42", ContainerMP4, false, nil},
		{"\x1A\x45\x00", ContainerUnknown, false, ErrUnknownContainer},
		{"\x00\x00\x00\x04ftyp", ContainerUnknown, false, ErrUnknownContainer},
		{"\x00\x01\x00\x00ftyp", ContainerUnknown, false, ErrUnknownContainer},
		{"\x00\x00\x00\x1Cmoov", ContainerUnknown, false, ErrUnknownContainer},
		{"\x00\x00\x00\x1Cfx", ContainerUnknown, false, ErrUnknownContainer},
		{"GET / HTTP/1.1", ContainerUnknown, false, ErrUnknownContainer},
		{"RIFF", ContainerUnknown, false, ErrUnknownContainer},
		{"\x47\x40\x00\x10", ContainerUnknown, false, ErrUnknownContainer}, // MPEG-TS
		{"{\"type\":\"hello\"}", ContainerUnknown, false, ErrUnknownContainer},
	}
	for _, tt := range tests {
		c, needMore, err := Sniff([]byte(tt.head))
		if c != tt.want || needMore != tt.needMore || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("Sniff(%q) = %v, %v, %v; want %v, %v, %v", tt.head, c, needMore, err, tt.want, tt.needMore, tt.err)
		}
	}
	if got := ContainerWebM.String() + " " + ContainerMP4.String() + " " + ContainerUnknown.String(); got != "webm mp4 unknown" {
		t.Errorf("String() = %s", got)
	}
}

func TestVideoSizeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		data := make([]byte, 1+rng.IntN(300))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if c, needMore, err := Sniff(data); !errors.Is(err, ErrUnknownContainer) {
			t.Errorf("random input %d: Sniff(%x) = %v, %v, %v; want ErrUnknownContainer", i, data, c, needMore, err)
		}
		// Random bytes never give a size, whatever container is assumed.
		for _, c := range []Container{ContainerWebM, ContainerMP4, ContainerUnknown} {
			if w, h, needMore, err := VideoSize(c, data); err == nil && !needMore || w != 0 || h != 0 {
				t.Errorf("random input %d as %v: VideoSize = %d, %d, %v, %v", i, c, w, h, needMore, err)
			}
		}
	}
	// Lies about sizes: huge, unknown where it must be known, past the end.
	lies := []struct {
		name string
		c    Container
		data []byte
	}{
		{"huge EBML header", ContainerWebM, append(ebmlID(idEBML), 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)},
		{"unknown-size EBML header", ContainerWebM, unknownSize(idEBML)},
		{"unknown-size SeekHead", ContainerWebM, bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment), unknownSize(0x114D9B74)}, nil)},
		{"TrackEntry past Tracks", ContainerWebM, bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment),
			ebmlID(idTracks), {0x83, idTrackEntry, 0x90}, make([]byte, 16)}, nil)},
		{"PixelWidth of 9 bytes", ContainerWebM, bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment),
			el(idTracks, el(idTrackEntry, el(idVideo, el(idPixelWidth, make([]byte, 9)))))}, nil)},
		{"zero width", ContainerWebM, bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment), el(idTracks, videoTrack(0, 480))}, nil)},
		{"width too big", ContainerWebM, bytes.Join([][]byte{ebmlHeader(), unknownSize(idSegment), el(idTracks, videoTrack(1<<40, 480))}, nil)},
		{"mp4 box of size 3", ContainerMP4, []byte("\x00\x00\x00\x03ftyp")},
		{"mp4 box to the end", ContainerMP4, []byte("\x00\x00\x00\x00ftyp")},
		{"mp4 huge free box", ContainerMP4, []byte("\x00\x00\x00\x01free\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF")},
		{"mp4 huge moov", ContainerMP4, []byte("\x7F\xFF\xFF\xFFmoov")},
		{"mp4 trak past moov", ContainerMP4, mp4Box("moov", []byte("\x00\x00\x01\x00trak"))},
	}
	for _, l := range lies {
		w, h, needMore, err := VideoSize(l.c, l.data)
		if err == nil || needMore || errors.Is(err, ErrNoVideoSize) {
			t.Errorf("%s: VideoSize = %d, %d, %v, %v; want a format error", l.name, w, h, needMore, err)
		} else if !strings.HasPrefix(err.Error(), "ingest: ") {
			t.Errorf("%s: error %q lacks the package context", l.name, err)
		}
	}
}

// writeSeeds writes the first 4 KiB of each sample to the seed corpus of
// FuzzVideoSize, so that fuzzing starts from real headers without running
// ffmpeg in every fuzz worker.
func writeSeeds(t *testing.T, samples []sample) {
	dir := filepath.Join("testdata", "fuzz", "FuzzVideoSize")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		name := strings.NewReplacer(" ", "-", ",", "").Replace(s.name)
		corpus := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data[:min(len(s.data), 4096)])
		if err := os.WriteFile(filepath.Join(dir, "ffmpeg-"+name), []byte(corpus), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzVideoSize checks that no input panics, answers are well formed, and a
// prefix never contradicts the whole input. Its seeds are the hand-made
// headers, the Chrome recordings and, in testdata/fuzz/FuzzVideoSize, the starts of the ffmpeg-made
// samples of TestVideoSize (go test -run TestVideoSize -fuzzseeds rewrites
// them).
func FuzzVideoSize(f *testing.F) {
	for _, s := range append(handMade(), chromeMade(f)...) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, needMore, err := Sniff(data)
		if err != nil && (needMore || c != ContainerUnknown) || needMore && c != ContainerUnknown {
			t.Fatalf("Sniff = %v, %v, %v", c, needMore, err)
		}
		for _, c := range []Container{ContainerWebM, ContainerMP4} {
			w, h, needMore, err := VideoSize(c, data)
			switch {
			case needMore && (err != nil || w != 0 || h != 0):
				t.Fatalf("%v: needMore with %dx%d, %v", c, w, h, err)
			case err != nil && (w != 0 || h != 0):
				t.Fatalf("%v: error %v with %dx%d", c, err, w, h)
			case !needMore && err == nil && (w < 1 || h < 1 || w > MaxVideoSide || h > MaxVideoSide):
				t.Fatalf("%v: size %dx%d", c, w, h)
			}
			for _, n := range []int{len(data) / 4, len(data) / 2, len(data) - 1} {
				if n < 0 {
					continue
				}
				pw, ph, pMore, perr := VideoSize(c, data[:n])
				if pMore {
					continue
				}
				if needMore || pw != w || ph != h || (perr == nil) != (err == nil) || perr != nil && perr.Error() != err.Error() {
					t.Fatalf("%v: prefix of %d bytes: %dx%d, %v, %v; whole: %dx%d, %v, %v", c, n, pw, ph, pMore, perr, w, h, needMore, err)
				}
			}
		}
	})
}
