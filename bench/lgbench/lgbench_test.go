package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

func TestPercentile(t *testing.T) {
	cases := []struct {
		name    string
		xs      []float64
		p       float64
		want    float64
		wantNaN bool
	}{
		{"empty", nil, 50, 0, true},
		{"one", []float64{3}, 95, 3, false},
		{"median odd", []float64{1, 2, 3}, 50, 2, false},
		{"median even interpolates", []float64{1, 2, 3, 4}, 50, 2.5, false},
		{"p95 of 0..100", seq(0, 100), 95, 95, false},
		{"p95 interpolates", []float64{0, 10}, 95, 9.5, false},
		{"min", []float64{1, 5, 9}, 0, 1, false},
		{"max", []float64{1, 5, 9}, 100, 9, false},
		{"clamped above", []float64{1, 5, 9}, 150, 9, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := percentile(c.xs, c.p)
			if c.wantNaN {
				if !math.IsNaN(got) {
					t.Fatalf("got %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-c.want) > 1e-9 {
				t.Fatalf("percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
			}
		})
	}
}

func seq(from, to int) []float64 {
	var out []float64
	for i := from; i <= to; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestSummarize(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
		want dist
	}{
		{"empty", nil, dist{}},
		{"unsorted", []float64{5, 1, 3}, dist{N: 3, P50: 3, P95: 4.8, Max: 5}},
		{"negative delays", []float64{-0.1, 0.2}, dist{N: 2, P50: 0.05, P95: 0.185, Max: 0.2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]float64(nil), c.xs...)
			got := summarize(c.xs)
			if got.N != c.want.N || !near(got.P50, c.want.P50) || !near(got.P95, c.want.P95) || !near(got.Max, c.want.Max) {
				t.Fatalf("summarize(%v) = %+v, want %+v", c.xs, got, c.want)
			}
			for i := range in {
				if in[i] != c.xs[i] {
					t.Fatal("summarize modified its input")
				}
			}
		})
	}
	if got := sumDist(dist{N: 2, P50: 1, P95: 2, Max: 3}, dist{}); got.N != 0 {
		t.Errorf("sumDist with an empty side = %+v, want empty", got)
	}
	if got := sumDist(dist{N: 2, P50: 1, P95: 2, Max: 3}, dist{N: 5, P50: 0.5, P95: 1, Max: 1}); got != (dist{N: 2, P50: 1.5, P95: 3, Max: 4}) {
		t.Errorf("sumDist = %+v", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// llPlaylist builds a gohlslib-style low-latency playlist: seq is the first
// MSN, gaps how many leading segments are gaps, full the durations of the
// complete segments after them (each split into 0.2 s parts when it is
// among the last two), parts the parts of the segment in progress.
func llPlaylist(seq, gaps int, full []float64, parts []float64) string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-TARGETDURATION:1\n")
	b.WriteString("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.50000,CAN-SKIP-UNTIL=6.00000\n")
	b.WriteString("#EXT-X-PART-INF:PART-TARGET=0.20000\n")
	b.WriteString("#EXT-X-MEDIA-SEQUENCE:" + itoa(seq) + "\n#EXT-X-MAP:URI=\"init.mp4\"\n")
	for i := 0; i < gaps; i++ {
		b.WriteString("#EXT-X-GAP\n#EXTINF:1.00000,\ngap.mp4\n")
	}
	for i, d := range full {
		if len(full)-i <= 2 {
			for rest := d; rest > 1e-9; rest -= 0.2 {
				b.WriteString("#EXT-X-PART:DURATION=" + ftoa(min(0.2, rest)) + ",URI=\"p.mp4\",INDEPENDENT=YES\n")
			}
		}
		b.WriteString("#EXTINF:" + ftoa(d) + ",\nseg" + itoa(seq+gaps+i) + ".mp4\n")
	}
	for _, p := range parts {
		b.WriteString("#EXT-X-PART:DURATION=" + ftoa(p) + ",URI=\"part.mp4\"\n")
	}
	b.WriteString("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"next.mp4\"\n")
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 5, 64) }

func TestParseMediaPlaylist(t *testing.T) {
	cases := []struct {
		name      string
		text      string
		seq       uint64
		segs      []segment
		parts     []float64
		ended     bool
		next      [2]int // _HLS_msn, _HLS_part
		wantError bool
	}{
		{
			name:  "gaps only, first parts",
			text:  llPlaylist(0, 7, nil, []float64{0.2, 0.2}),
			seq:   0,
			segs:  gapSegs(7),
			parts: []float64{0.2, 0.2},
			next:  [2]int{7, 2},
		},
		{
			name:  "gaps and segments with parts",
			text:  llPlaylist(2, 5, []float64{1, 1}, []float64{0.2}),
			seq:   2,
			segs:  append(gapSegs(5), segment{Duration: 1}, segment{Duration: 1}),
			parts: []float64{0.2},
			next:  [2]int{9, 1},
		},
		{
			name: "segment just completed, no parts yet",
			text: llPlaylist(10, 0, []float64{1, 1, 1}, nil),
			seq:  10,
			segs: []segment{{Duration: 1}, {Duration: 1}, {Duration: 1}},
			next: [2]int{13, 0},
		},
		{
			name:  "ended",
			text:  "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1.0,\na.ts\n#EXTINF:0.5,\nb.ts\n#EXT-X-ENDLIST\n",
			seq:   4,
			segs:  []segment{{Duration: 1}, {Duration: 0.5}},
			ended: true,
			next:  [2]int{6, 0},
		},
		{
			name: "ffmpeg hls muxer, CRLF, title after comma",
			text: "#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-TARGETDURATION:1\r\n#EXT-X-MEDIA-SEQUENCE:12\r\n#EXTINF:1.000000,title\r\nseg12.ts\r\n",
			seq:  12,
			segs: []segment{{Duration: 1}},
			next: [2]int{13, 0},
		},
		{
			name: "delta update skips segments",
			text: "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXTINF:1,\nx.mp4\n",
			seq:  7,
			segs: []segment{{Duration: 1}},
			next: [2]int{8, 0},
		},
		{name: "not a playlist", text: "<html>", wantError: true},
		{name: "empty", text: "", wantError: true},
		{name: "bad duration", text: "#EXTM3U\n#EXTINF:abc,\nx.ts\n", wantError: true},
		{name: "uri without EXTINF", text: "#EXTM3U\nx.ts\n", wantError: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl, err := parseMediaPlaylist(c.text)
			if c.wantError {
				if err == nil {
					t.Fatalf("no error for %q", c.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pl.MediaSequence != c.seq || pl.Ended != c.ended {
				t.Errorf("sequence %d ended %v, want %d %v", pl.MediaSequence, pl.Ended, c.seq, c.ended)
			}
			if !equalSegs(pl.Segments, c.segs) {
				t.Errorf("segments %+v, want %+v", pl.Segments, c.segs)
			}
			if !equalFloats(pl.Parts, c.parts) {
				t.Errorf("parts %v, want %v", pl.Parts, c.parts)
			}
			if msn, part := nextPart(pl); msn != uint64(c.next[0]) || part != c.next[1] {
				t.Errorf("next part %d.%d, want %d.%d", msn, part, c.next[0], c.next[1])
			}
		})
	}
}

func gapSegs(n int) []segment {
	s := make([]segment, n)
	for i := range s {
		s[i] = segment{Duration: 1, Gap: true}
	}
	return s
}

func equalSegs(a, b []segment) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Gap != b[i].Gap || !near(a[i].Duration, b[i].Duration) {
			return false
		}
	}
	return true
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !near(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestMediaClock feeds playlists in order, as reloads return them, and
// checks the media end after each.
func TestMediaClock(t *testing.T) {
	type step struct {
		text   string
		end    float64
		missed int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"low latency from the start, window slides", []step{
			{llPlaylist(0, 7, nil, nil), 0, 0},
			{llPlaylist(0, 7, nil, []float64{0.2}), 0.2, 0},
			{llPlaylist(0, 7, nil, []float64{0.2, 0.2, 0.2, 0.2, 0.2}), 1.0, 0},
			// the segment completes: 7 gaps slide to 6, the parts become seg7
			{llPlaylist(1, 6, []float64{1}, nil), 1.0, 0},
			{llPlaylist(1, 6, []float64{1}, []float64{0.2}), 1.2, 0},
			{llPlaylist(2, 5, []float64{1, 0.96}, []float64{0.2, 0.2}), 2.36, 0},
			// gaps gone, window of seven real segments
			{llPlaylist(9, 0, []float64{1, 1, 1, 1, 1, 1, 1}, []float64{0.2}), 9.16, 0},
		}},
		{"an older playlist changes nothing", []step{
			{llPlaylist(0, 7, []float64{1, 1}, []float64{0.2}), 2.2, 0},
			{llPlaylist(0, 7, []float64{1}, []float64{0.2, 0.2}), 2.2, 0},
			{llPlaylist(0, 7, []float64{1, 1}, []float64{0.2, 0.2}), 2.4, 0},
		}},
		{"gaps that slid out before the first playlist are not missed", []step{
			{llPlaylist(2, 5, []float64{1, 1}, nil), 2, 0},
			{llPlaylist(3, 4, []float64{1, 1, 1}, []float64{0.2}), 3.2, 0},
		}},
		{"media that slid out before the first playlist is missed", []step{
			{llPlaylist(9, 0, []float64{1, 1}, nil), 2, 9},
		}},
		{"segments that slid out unseen are counted as missed", []step{
			{llPlaylist(0, 2, []float64{1}, nil), 1, 0},
			{llPlaylist(6, 0, []float64{1, 1}, nil), 3, 3},
		}},
		{"plain playlist with media sequence", []step{
			{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\na.ts\n", 1, 0},
			{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\na.ts\n#EXTINF:1.033,\nb.ts\n", 2.033, 0},
			{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1.033,\nb.ts\n#EXTINF:0.967,\nc.ts\n", 3, 0},
			{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1.033,\nb.ts\n#EXTINF:0.967,\nc.ts\n", 3, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var clock mediaClock
			for i, s := range c.steps {
				pl, err := parseMediaPlaylist(s.text)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := clock.update(pl); !near(got, s.end) {
					t.Fatalf("step %d: media end %v, want %v", i, got, s.end)
				}
				if clock.missed != s.missed || len(clock.holes) > 0 != (s.missed > 0) {
					t.Fatalf("step %d: missed %d, want %d", i, clock.missed, s.missed)
				}
			}
		})
	}
}

func TestVariantURI(t *testing.T) {
	const ladder = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio2",URI="720p/audio2_stream.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=2766960,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000
720p/video1_stream.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1225240,CODECS="avc1.4d401f,mp4a.40.2",RESOLUTION=854x480
480p/video1_stream.m3u8
`
	const portrait = `#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=480x854
480p/v.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2,RESOLUTION=720x1280
720p/v.m3u8
`
	cases := []struct {
		name, text string
		height     int
		want       string
		wantErr    bool
	}{
		{"720p by height", ladder, 720, "720p/video1_stream.m3u8", false},
		{"480p", ladder, 480, "480p/video1_stream.m3u8", false},
		{"missing height falls back to the first", ladder, 1080, "720p/video1_stream.m3u8", false},
		{"portrait by short side", portrait, 720, "720p/v.m3u8", false},
		{"no variants", "#EXTM3U\n", 720, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := variantURI(c.text, c.height)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("variantURI = %q, %v; want %q (error %v)", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestAttr(t *testing.T) {
	cases := []struct{ list, name, want string }{
		{`DURATION=0.20000,URI="a.mp4",INDEPENDENT=YES`, "DURATION", "0.20000"},
		{`DURATION=0.20000,URI="a.mp4",INDEPENDENT=YES`, "URI", "a.mp4"},
		{`BANDWIDTH=1,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720`, "RESOLUTION", "1280x720"},
		{`CODECS="avc1.64001f,mp4a.40.2"`, "CODECS", "avc1.64001f,mp4a.40.2"},
		{`A=1`, "B", ""},
		{``, "A", ""},
	}
	for _, c := range cases {
		if got := attr(c.list, c.name); got != c.want {
			t.Errorf("attr(%q, %q) = %q, want %q", c.list, c.name, got, c.want)
		}
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := loadgen.ParseMachineCPU([]byte("cpu  100 0 100 700 50 0 0 50 0 0\ncpu0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadgen.ParseMachineCPU([]byte("cpu  200 0 150 800 50 0 50 150 10 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	running, stolen := busy(machineCPU{MachineCPU: a}, machineCPU{MachineCPU: b})
	// delta: user 100, system 50, idle 100, softirq 50, steal 100: total 400
	if !near(running, 0.5) || !near(stolen, 0.25) {
		t.Fatalf("busy = %v, %v; want 0.5, 0.25", running, stolen)
	}
	if _, err := loadgen.ParseMachineCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("no error for a bad first line")
	}
}

func TestCPUUse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k1, k2 := procKey{10, 1}, procKey{11, 2}
	ss := []cpuSample{
		{at: t0, gateway: 100, ffmpeg: map[procKey]uint64{k1: 1000}, bench: map[procKey]uint64{k2: 7}},
		{at: t0.Add(5 * time.Second), gateway: 110, ffmpeg: map[procKey]uint64{k1: 1300, k2: 50}},
		{at: t0.Add(10 * time.Second), gateway: 120, ffmpeg: map[procKey]uint64{k2: 250}, bench: map[procKey]uint64{k2: 107}},
	}
	gw, ff, bench := cpuUse(ss)
	// gateway: 20 ticks in 10 s; ffmpeg: k1 300 + k2 200 ticks; bench 100
	if !near(gw, 0.02) || !near(ff, 0.5) || !near(bench, 0.1) {
		t.Fatalf("cpuUse = %v, %v, %v; want 0.02, 0.5, 0.1", gw, ff, bench)
	}
	if gw, ff, bench := cpuUse(ss[:1]); gw != 0 || ff != 0 || bench != 0 {
		t.Fatalf("cpuUse of one sample = %v, %v, %v", gw, ff, bench)
	}
	if got := window(ss, t0.Add(time.Second), t0.Add(10*time.Second)); len(got) != 2 {
		t.Fatalf("window kept %d samples, want 2", len(got))
	}
}

func TestCheckLoopback(t *testing.T) {
	cases := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:80", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"10.0.0.1:8080", false},
		{"example.com:80", false},
		{"0.0.0.0:8080", false},
		{"127.0.0.1", false},
	}
	for _, c := range cases {
		if err := loadgen.CheckAddr(c.addr); (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q) = %v, want ok %v", c.addr, err, c.ok)
		}
	}
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr bool
		check   func(options) bool
	}{
		{nil, false, func(o options) bool {
			return o.duration == 30*time.Second && o.codec == "h264" && o.join == 6*time.Second && len(o.startupCodecs) == 1
		}},
		{[]string{"-duration", "8s", "-startup-codecs", ""}, false, func(o options) bool {
			return o.join == 2*time.Second && len(o.startupCodecs) == 0
		}},
		{[]string{"-codec", "vp9"}, true, nil},
		{[]string{"-addr", "192.168.1.1:80"}, true, nil},
		{[]string{"-duration", "1s"}, true, nil},
		{[]string{"extra"}, true, nil},
	}
	for _, c := range cases {
		o, err := parseFlags(c.args, io.Discard)
		if (err != nil) != c.wantErr {
			t.Errorf("parseFlags(%q): %v, want error %v", c.args, err, c.wantErr)
			continue
		}
		if c.check != nil && !c.check(o) {
			t.Errorf("parseFlags(%q) = %+v", c.args, o)
		}
	}
}

// TestPump: chunks gather for the interval, the first send is announced,
// and everything arrives in order.
func TestPump(t *testing.T) {
	pr, pw := io.Pipe()
	var got bytes.Buffer
	var sends int
	started := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		_, err := pump(context.Background(), pr, 50*time.Millisecond, func(b []byte) error {
			sends++
			got.Write(b)
			return nil
		}, started)
		done <- err
	}()
	for i := 0; i < 10; i++ {
		pw.Write([]byte{byte('a' + i)})
	}
	time.Sleep(120 * time.Millisecond)
	pw.Write([]byte("xyz"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.String() != "abcdefghijxyz" {
		t.Fatalf("sent %q", got.String())
	}
	if sends < 2 || sends > 3 {
		t.Errorf("%d sends, want the writes gathered into 2 or 3", sends)
	}
	select {
	case <-started:
	default:
		t.Error("start not announced")
	}
}

func TestSourceArgs(t *testing.T) {
	for _, c := range []struct{ codec, want string }{{"vp8", "libvpx"}, {"h264", "libx264"}} {
		args, err := sourceArgs(c.codec, 8)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Join(args, " ")
		for _, w := range []string{c.want, "-re", "testsrc2=size=1280x720:rate=30", "-t 8.000", "pipe:1"} {
			if !strings.Contains(s, w) {
				t.Errorf("%s: %q lacks %q", c.codec, s, w)
			}
		}
	}
	if _, err := sourceArgs("av1", 1); err == nil {
		t.Error("no error for an unknown codec")
	}
}

func TestDescendants(t *testing.T) {
	procs := []loadgen.ProcStat{
		{PID: 1, PPID: 0}, {PID: 10, PPID: 1}, // the benchmark
		{PID: 11, PPID: 10}, {PID: 12, PPID: 11}, {PID: 13, PPID: 12}, // chromium tree
		{PID: 20, PPID: 10}, {PID: 21, PPID: 20}, // the gateway and its ffmpeg
		{PID: 30, PPID: 1},
	}
	var got []int
	for _, p := range descendants(procs, 10, 20) {
		got = append(got, p.PID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{11, 12, 13}) {
		t.Fatalf("descendants = %v, want [11 12 13]", got)
	}
}
