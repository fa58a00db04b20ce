package web

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLatencyReports: a report is accepted once per interval per client
// address, bad input is refused without counting, the median goes to
// ViewerLatency and the histogram to /metrics (public streams only).
func TestLatencyReports(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	cat := fakeCatalog{
		"on":    {info: StreamInfo{Name: "on", Live: true}, ready: ready},
		"ended": {info: StreamInfo{Name: "ended", Live: false}, ready: ready},
	}
	s := started(t, &Server{Catalog: cat, Publisher: fakePublisher{}, Chat: fakeChat{}, LatencyReporters: 3,
		ClientAddr: func(r *http.Request) string { return r.Header.Get("X-Test-Client") }})
	h := s.Handler()
	post := func(stream, client, body string) (int, map[string]any) {
		req := httptest.NewRequest(http.MethodPost, "/api/streams/"+stream+"/latency", strings.NewReader(body))
		req.Header.Set("X-Test-Client", client)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	steps := []struct {
		stream, client, body string
		code                 int
	}{
		{"on", "a", `{}`, 200},                                             // a clock request
		{"on", "a", `{"latency":1.2}`, 429},                                // within the interval
		{"on", "b", `{"latency":0.8}`, 200},                                //
		{"on", "c", `{"latency":1.6}`, 200},                                //
		{"on", "d", `{"latency":1.0}`, 503},                                // a fourth address: LatencyReporters is 3
		{"on", "e", `{"latency":0}`, 400},                                  // not above 0
		{"on", "e", `{"latency":61}`, 400},                                 // above 60 s
		{"on", "e", `{"latency":"1"}`, 400},                                // not a number
		{"on", "e", `{"latency":1,` + strings.Repeat(" ", 300) + `}`, 400}, // too long
		{"ended", "a", `{"latency":1}`, 404},                               // not live
		{"nosuch", "a", `{"latency":1}`, 404},                              //
		{"bad%21name", "a", `{"latency":1}`, 400},                          //
	}
	for i, st := range steps {
		code, m := post(st.stream, st.client, st.body)
		if code != st.code {
			t.Errorf("step %d %+v: %d, want %d", i, st, code, st.code)
		}
		if code == 200 {
			if now, _ := m["now"].(float64); now < float64(time.Now().Add(-time.Minute).UnixMilli()) {
				t.Errorf("step %d: answer %v has no clock", i, m)
			}
		}
	}
	if v, ok := s.ViewerLatency("on"); !ok || math.Abs(v-1.2) > 1e-9 {
		t.Errorf("ViewerLatency = %v %v, want the median 1.2 of 0.8 and 1.6", v, ok)
	}
	if _, ok := s.ViewerLatency("ended"); ok {
		t.Error("a latency for a stream nobody reported")
	}
	metrics := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		return string(body)
	}
	for _, line := range []string{
		`livegate_viewer_latency_seconds_bucket{stream="on",le="0.75"} 0`,
		`livegate_viewer_latency_seconds_bucket{stream="on",le="1"} 1` + "\n", // not le="1.x"
		`livegate_viewer_latency_seconds_bucket{stream="on",le="1.5"} 1`,
		`livegate_viewer_latency_seconds_bucket{stream="on",le="2"} 2`,
		`livegate_viewer_latency_seconds_bucket{stream="on",le="+Inf"} 2`,
		`livegate_viewer_latency_seconds_sum{stream="on"} 2.4`, // 2.4000000000000004: a prefix
		`livegate_viewer_latency_seconds_count{stream="on"} 2`,
	} {
		if !strings.Contains(metrics(), line) {
			t.Errorf("/metrics lacks %s:\n%s", line, metrics())
		}
	}

	// once private, the stream's name leaves /metrics
	cat["on"].info.Private = true
	if strings.Contains(metrics(), "livegate_viewer_latency_seconds_count") {
		t.Error("a private stream's latency is on /metrics")
	}
}

// undatedStream is a live stream whose publisher sends no capture clock.
type undatedStream struct{ fakeStream }

func (undatedStream) CaptureDated() bool { return false }

// TestLatencyUndated: a stream not dated by the capture clock refuses
// reports (409), so that its histogram never holds other figures.
func TestLatencyUndated(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	s := started(t, &Server{Catalog: catalogOf{"u": &undatedStream{fakeStream{info: StreamInfo{Name: "u", Live: true}, ready: ready}}},
		Publisher: fakePublisher{}, Chat: fakeChat{}})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/streams/u/latency", strings.NewReader(`{"latency":1}`)))
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"undated"`) {
		t.Errorf("%d %s, want 409 undated", rec.Code, rec.Body)
	}
	if _, ok := s.ViewerLatency("u"); ok {
		t.Error("an undated stream has a viewer latency")
	}
}

// TestLatencyStreamsForgotten: a stream that is no longer live loses its
// reports when another stream reports.
func TestLatencyStreamsForgotten(t *testing.T) {
	l := latencies{interval: time.Second, window: time.Minute, max: 10}
	live := map[string]bool{"a": true, "b": true}
	now := time.Now()
	l.add("a", "x", 1, now, func(s string) bool { return live[s] })
	live["a"] = false
	l.add("b", "x", 1, now, func(s string) bool { return live[s] })
	if _, ok := l.median("a", now); ok {
		t.Error("an ended stream's reports are kept")
	}
	if v, ok := l.median("b", now); !ok || v != 1 {
		t.Errorf("median b = %v %v", v, ok)
	}
	if _, ok := l.median("b", now.Add(2*time.Minute)); ok {
		t.Error("a report older than the window counts")
	}
}
