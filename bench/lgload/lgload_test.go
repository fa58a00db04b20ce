package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

func TestCheckLoopback(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://127.0.0.2:9", true},
		{"http://[::1]:8080/", true},
		{"http://localhost:8080", true},
		{"https://127.0.0.1:8080", false},
		{"http://10.0.0.1:8080", false},
		{"http://example.com", false},
		{"http://0.0.0.0:8080", false},
		{"http://127.0.0.1.example.com", false},
		{"ws://127.0.0.1:8080", false},
		{"://bad", false},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			_, err := loadgen.CheckURL(c.url, "http")
			if (err == nil) != c.ok {
				t.Errorf("CheckURL(%q) = %v, want ok %v", c.url, err, c.ok)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string // part of the error, "" for none
	}{
		{nil, ""},
		{[]string{"-url", "http://192.168.1.1:8080"}, "not a loopback"},
		{[]string{"-mode", "dash"}, "-mode"},
		{[]string{"-publishers", "0"}, "-publishers"},
		{[]string{"-size", "big"}, "-size"},
		{[]string{"-replay", "/nonexistent.webm"}, "-replay"},
		{[]string{"-prefix", "a/b"}, "-prefix"},
		{[]string{"-bench-get", "x", "-concurrency", "0"}, "-concurrency"},
		{[]string{"-chat", "50", "-chat-rate", "10"}, ""},
		{[]string{"-chat", "-1"}, "-chat"},
		{[]string{"-chat", "10001"}, "-chat"},
		{[]string{"-chat", "10000", "-publishers", "3"}, "chat clients in all"},
		{[]string{"-chat", "5", "-chat-rate", "-1"}, "-chat-rate"},
		{[]string{"-chat", "5", "-chat-rate", "5000"}, "-chat-rate"},
		{[]string{"-origin", "http://127.0.0.1:9", "-publish=false"}, ""},
		{[]string{"-origin", "http://10.0.0.1:8080"}, "-origin"},
		{[]string{"-late", "-1s"}, "-late"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, err := parseFlags(c.args, &strings.Builder{})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("error %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// Hand-written low-latency playlists as gohlslib writes them: 200 ms
// parts, one-second segments, leading gap segments.
const (
	llStart = `#EXTM3U
#EXT-X-VERSION:10
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-MAP:URI="i.mp4"
#EXT-X-GAP
#EXTINF:1.00000,
gap.mp4
#EXT-X-GAP
#EXTINF:1.00000,
gap.mp4
#EXT-X-PART:DURATION=0.20000,URI="p0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="p1.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p2.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p3.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p4.mp4"
#EXTINF:1.00000,
s2.mp4
#EXT-X-PART:DURATION=0.20000,URI="p5.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="p6.mp4"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p7.mp4"
`
	llNext = `#EXTM3U
#EXT-X-VERSION:10
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-MAP:URI="i.mp4"
#EXT-X-GAP
#EXTINF:1.00000,
gap.mp4
#EXT-X-PART:DURATION=0.20000,URI="p0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="p1.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p2.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p3.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p4.mp4"
#EXTINF:1.00000,
s2.mp4
#EXT-X-PART:DURATION=0.20000,URI="p5.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="p6.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p7.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p8.mp4"
#EXT-X-PART:DURATION=0.20000,URI="p9.mp4"
#EXTINF:1.00000,
s3.mp4
#EXT-X-PART:DURATION=0.20000,URI="p10.mp4",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p11.mp4"
`
	llEnded = `#EXTM3U
#EXT-X-VERSION:10
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:2
#EXT-X-MAP:URI="i.mp4"
#EXTINF:1.00000,
s2.mp4
#EXTINF:1.00000,
s3.mp4
#EXTINF:0.60000,
s4.mp4
#EXT-X-ENDLIST
`
)

func mustMedia(t *testing.T, text string) *playlist.Media {
	t.Helper()
	pl := &playlist.Media{}
	if err := pl.Unmarshal([]byte(text)); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return pl
}

func TestFollower(t *testing.T) {
	cases := []struct {
		name  string
		ll    bool
		lists []string
		want  [][]string // URIs returned by each update
		query string     // blocking query after the last list
		edge0 time.Duration
	}{
		{
			name:  "ll starts 3 parts back, then takes only new parts",
			ll:    true,
			lists: []string{llStart, llNext},
			want:  [][]string{{"p4.mp4", "p5.mp4", "p6.mp4"}, {"p7.mp4", "p8.mp4", "p9.mp4", "p10.mp4"}},
			query: "_HLS_msn=4&_HLS_part=1",
			edge0: 400 * time.Millisecond,
		},
		{
			name:  "ll reload repeated gives nothing new",
			ll:    true,
			lists: []string{llNext, llNext},
			want:  [][]string{{"p8.mp4", "p9.mp4", "p10.mp4"}, nil},
			query: "_HLS_msn=4&_HLS_part=1",
			edge0: 400 * time.Millisecond,
		},
		{
			name:  "ll to the end: completed segments without parts are taken whole",
			ll:    true,
			lists: []string{llNext, llEnded},
			want:  [][]string{{"p8.mp4", "p9.mp4", "p10.mp4"}, {"s4.mp4"}},
			query: "_HLS_msn=5&_HLS_part=0",
			edge0: 400 * time.Millisecond,
		},
		{
			name:  "segments skip gaps and in-progress parts",
			lists: []string{llStart, llNext, llEnded},
			want:  [][]string{{"s2.mp4"}, {"s3.mp4"}, {"s4.mp4"}},
			query: "_HLS_msn=5&_HLS_part=0",
			edge0: 400 * time.Millisecond,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := follower{LL: c.ll}
			var pl *playlist.Media
			for i, text := range c.lists {
				pl = mustMedia(t, text)
				items := f.update(pl)
				var got []string
				for _, it := range items {
					got = append(got, it.URI)
				}
				if strings.Join(got, " ") != strings.Join(c.want[i], " ") {
					t.Errorf("update %d = %v, want %v", i, got, c.want[i])
				}
				if i == 0 && len(items) > 0 && items[0].Edge != c.edge0 {
					t.Errorf("first item edge %v, want %v", items[0].Edge, c.edge0)
				}
			}
			if q := blockingQuery(pl); q != c.query {
				t.Errorf("blockingQuery = %q, want %q", q, c.query)
			}
		})
	}
}

func TestListings(t *testing.T) {
	var l listings
	t0 := time.Now()
	if got := l.note("/a", t0.Add(time.Second)); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("first note: %v", got)
	}
	if got := l.note("/a", t0); !got.Equal(t0) {
		t.Errorf("an earlier note: %v, want it kept", got)
	}
	if got := l.note("/a", t0.Add(2*time.Second)); !got.Equal(t0) {
		t.Errorf("a later note: %v, want the earliest", got)
	}
	if p, err := itemPath("http://127.0.0.1:1/live/s/720p/v.m3u8?_HLS_msn=3", "p1.mp4?x=1"); err != nil || p != "/live/s/720p/p1.mp4" {
		t.Errorf("itemPath: %q, %v", p, err)
	}
}

// mv is a multivariant playlist as the gateway writes it: audio in a
// rendition of its own.
const mvAudio = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio2",AUTOSELECT=YES,DEFAULT=YES,URI="720p/audio2_stream.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=2960264,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,AUDIO="audio"
720p/video1_stream.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=717304,CODECS="avc1.4d401e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio"
360p/video1_stream.m3u8
`

func TestMediaPlaylists(t *testing.T) {
	var mv playlist.Multivariant
	if err := mv.Unmarshal([]byte(mvAudio)); err != nil {
		t.Fatal(err)
	}
	got := mediaPlaylists(&mv)
	want := []string{"720p/video1_stream.m3u8", "360p/video1_stream.m3u8", "720p/audio2_stream.m3u8"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mediaPlaylists: %v, want %v", got, want)
	}
	if a := audioPlaylist(&mv, mv.Variants[1]); a != "720p/audio2_stream.m3u8" {
		t.Errorf("audioPlaylist: %q", a)
	}
	mv.Variants[0].Audio = ""
	if a := audioPlaylist(&mv, mv.Variants[0]); a != "" {
		t.Errorf("audioPlaylist without a group: %q", a)
	}
}

func TestStallClock(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	cases := []struct {
		name    string
		media   []float64 // seconds at which media arrived
		checks  []float64
		want    int
		longest time.Duration
	}{
		{"steady", []float64{0.2, 0.4, 1.4, 3.0}, []float64{3.1}, 0, 0},
		{"one long gap counted once", []float64{1, 4}, []float64{2.5, 3.1, 3.5}, 1, 3 * time.Second},
		{"two gaps", []float64{3, 6}, nil, 2, 3 * time.Second},
		{"stalled at the end", []float64{1}, []float64{4}, 1, 3 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := stallClock{limit: 2 * time.Second, last: t0}
			events := map[float64]bool{}
			for _, m := range c.media {
				events[m] = true
			}
			var times []float64
			times = append(append(times, c.media...), c.checks...)
			for i := range times {
				for j := i + 1; j < len(times); j++ {
					if times[j] < times[i] {
						times[i], times[j] = times[j], times[i]
					}
				}
			}
			for _, x := range times {
				if events[x] {
					s.media(at(x))
				} else {
					s.check(at(x))
				}
			}
			if s.count != c.want || s.longest != c.longest {
				t.Errorf("count %d longest %v, want %d %v", s.count, s.longest, c.want, c.longest)
			}
		})
	}
}

func TestSourceArgs(t *testing.T) {
	cases := []struct {
		name, size, replay string
		drawtext           bool
		has, hasNot        []string
	}{
		{"pattern with clock", "1280x720", "", true,
			[]string{"testsrc2=size=1280x720:rate=30", "drawtext=", "libvpx", "-re", "pipe:1", "-cluster_time_limit"}, []string{"-stream_loop"}},
		{"pattern without clock", "640x360", "", false, []string{"testsrc2=size=640x360:rate=30"}, []string{"drawtext="}},
		{"replay", "", "cap.webm", true, []string{"-stream_loop", "cap.webm", "copy"}, []string{"testsrc2", "libvpx"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(sourceArgs(c.size, c.replay, 10, c.drawtext), " ")
			for _, s := range c.has {
				if !strings.Contains(got, s) {
					t.Errorf("args %q lack %q", got, s)
				}
			}
			for _, s := range c.hasNot {
				if strings.Contains(got, s) {
					t.Errorf("args %q hold %q", got, s)
				}
			}
		})
	}
}

// startGateway builds the real gateway and starts it on a free loopback
// port for the test; it returns the address and the pid. It skips the test
// without ffmpeg (outside CI) or with -short.
func startGateway(t *testing.T) (addr string, pid int) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg not found, and CI is set: the smoke test must run in CI")
		}
		t.Skip("ffmpeg not found: skipping the smoke test (it runs in CI)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "livegate")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, "../../cmd/livegate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gateway: %v\n%s", err, out)
	}
	addr = freeAddr(t)
	gw := exec.Command(bin, "--listen", addr)
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	gw.Stdout, gw.Stderr = logf, logf
	if err := gw.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() {
		gw.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { gw.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			gw.Process.Kill()
			<-done
		}
	})
	waitListening(t, addr)
	return addr, gw.Process.Pid
}

// TestSmoke builds the real gateway, runs 1 publisher, 2 viewers and 3
// chat clients against it for about 8 s and checks the report.
func TestSmoke(t *testing.T) {
	addr, pid := startGateway(t)
	dir := t.TempDir()
	cfg, err := parseFlags([]string{"-url", "http://" + addr, "-publishers", "1", "-viewers", "2",
		"-chat", "3", "-chat-rate", "2",
		"-duration", "8s", "-start-wait", "60s", "-gateway-pid", strconv.Itoa(pid),
		"-json", filepath.Join(dir, "report.json")}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var out, progress strings.Builder
	if err := runLoad(ctx, cfg, &out, &progress); err != nil {
		t.Fatalf("runLoad: %v\n%s", err, progress.String())
	}
	t.Logf("summary:\n%s", out.String())
	if !strings.Contains(progress.String(), "chat joined 3/3") {
		t.Errorf("progress does not show the chat:\n%s", progress.String())
	}
	rep := readReport(t, cfg.JSON)
	checkReport(t, rep, 2, 3)
	if t.Failed() {
		t.Logf("progress:\n%s", progress.String())
	}
	switch {
	case runtime.GOOS != "linux":
		// No /proc: the gateway's figures are unavailable (loadgen.ErrNoProc).
		if rep.Gateway != nil {
			t.Errorf("report: gateway figures %+v without /proc", rep.Gateway)
		}
	case rep.Gateway == nil || rep.Gateway.RSSStreamsMB <= 0 || rep.Gateway.RSSChatMB <= 0:
		t.Errorf("report: no gateway memory: %+v", rep.Gateway)
	}
}

// readReport decodes the JSON report at path.
func readReport(t *testing.T, path string) report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	return rep
}

// checkReport checks that the viewers and chat clients ran and reported:
// figures of the tool working, never of the machine's speed.
func checkReport(t *testing.T, rep report, viewers, chat int) {
	t.Helper()
	if rep.Total.Bytes <= 0 || rep.Total.Requests <= 0 {
		t.Errorf("report: %d bytes in %d requests, want some", rep.Total.Bytes, rep.Total.Requests)
	}
	if rep.Total.Viewers != viewers {
		t.Errorf("report: %d viewers, want %d", rep.Total.Viewers, viewers)
	}
	// the prober followed the stream and the viewers' parts were timed
	if rep.Total.PartsListed == 0 || rep.Total.PlaylistVersions == 0 || rep.Total.ProbeRequests == 0 {
		t.Errorf("report: prober saw %d parts, %d versions in %d requests, want some (last error %q)",
			rep.Total.PartsListed, rep.Total.PlaylistVersions, rep.Total.ProbeRequests, rep.Total.ProbeLastError)
	}
	if rep.Total.Delivered == 0 || rep.Total.DeliveryMax < rep.Total.DeliveryP50 {
		t.Errorf("report: %d deliveries timed (p50 %v max %v), want some", rep.Total.Delivered, rep.Total.DeliveryP50, rep.Total.DeliveryMax)
	}
	t.Logf("report: delivery p50 %.0f ms p99 %.0f ms, %d of %d late", rep.Total.DeliveryP50, rep.Total.DeliveryP99, rep.Total.Late, rep.Total.Delivered)
	// stalls are a figure of the machine's load, not a pass mark: this is
	// a smoke test (the tool runs and reports), never a timed assertion
	t.Logf("report: %d stalls (longest %.1f s)", rep.Total.Stalls, rep.Total.LongestStall)
	c := rep.Total.Chat
	if c == nil || len(rep.Streams) == 0 || rep.Streams[0].Chat == nil {
		t.Fatalf("report: no chat figures: %+v", rep.Total)
	}
	if c.Clients != chat || c.Joined != int64(chat) {
		t.Errorf("report: chat joined %d of %d, want %d", c.Joined, c.Clients, chat)
	}
	// Every member gets each message, so any delivery has a latency.
	if c.Sent <= 0 || c.Delivered <= 0 || c.P50 <= 0 || c.P99 < c.P50 {
		t.Errorf("report: chat sent %d delivered %d p50 %v p99 %v, want some", c.Sent, c.Delivered, c.P50, c.P99)
	}
	t.Logf("report: chat delivered %d/%d, %d errors, %d unexpected closes", c.Delivered, c.Expected, c.Errors, c.Closes)
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitListening polls addr until it accepts connections, for up to 10 s.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway not listening on %s", addr)
}
