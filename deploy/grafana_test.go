package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/natstest"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// promKeywords are the words of PromQL that are not metric names.
var promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true, "atan2": true}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promLabels   = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// label_values(metric, label) query) uses: the identifiers left once
// strings, label matchers, ranges and grouping labels are removed, that
// are not keywords and not called as functions.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promLabels.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	if m := regexp.MustCompile(`^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`).FindStringSubmatch(s); m != nil {
		return []string{m[1]}
	}
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] == '$' || s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // a Grafana variable, a number's or a duration's tail
		}
		if promKeywords[strings.ToLower(word)] || strings.HasPrefix(strings.TrimSpace(s[loc[1]:]), "(") {
			continue
		}
		out = append(out, word)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`livegate_streams_live`, []string{"livegate_streams_live"}},
		{`sum by (stream) (rate(livegate_http_requests_total{route="media",instance=~"$instance"}[$__rate_interval]))`, []string{"livegate_http_requests_total"}},
		{`max without (instance) (a_b) / on (stream) group_left (x) c:d offset 5m`, []string{"a_b", "c:d"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) > bool 0.5`, []string{"x_seconds_bucket"}},
		{`label_values(livegate_streams_live, instance)`, []string{"livegate_streams_live"}},
		{`count(up{job="a{b}"}) or vector(0)`, []string{"up"}},
	}
	for _, c := range cases {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// loadDashboard decodes deploy/grafana/livegate.json and returns it with
// every query it holds: the panels' expressions and the variables'.
func loadDashboard(t *testing.T) (*dashboard, []string) {
	t.Helper()
	b, err := os.ReadFile("grafana/livegate.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatal("grafana/livegate.json is not valid JSON")
	}
	var d dashboard
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&d); err != nil {
		t.Fatalf("grafana/livegate.json: %v", err)
	}
	var queries []string
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %d %q: want a title and a place on the 24-column grid (%+v)", p.ID, p.Title, p.GridPos)
			}
			if p.Type != "row" {
				if p.Datasource == nil || p.Datasource.Type != "prometheus" || len(p.Targets) == 0 {
					t.Errorf("panel %q: want a Prometheus data source and queries", p.Title)
				}
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) == "" {
						t.Errorf("panel %q: target %s has no expression", p.Title, tg.RefID)
					}
					queries = append(queries, tg.Expr)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query) // the older form: a plain string
		}
		queries = append(queries, q.Query)
	}
	if d.Title == "" || d.UID == "" || len(queries) == 0 {
		t.Fatalf("dashboard %q (uid %q) with %d queries", d.Title, d.UID, len(queries))
	}
	return &d, queries
}

// TestDashboard checks that grafana/livegate.json is a Grafana dashboard
// whose every query reads metrics a real gateway shows: a gateway joined
// to a real NATS server with JetStream (so the cluster's metrics exist)
// with a stream published (with a capture clock), watched, talked about
// and reported on by a viewer (so the streams', viewers', latency and
// chat's exist), its /metrics read until it has them all or 90 s have
// passed. The names missing are listed.
func TestDashboard(t *testing.T) {
	_, queries := loadDashboard(t)
	used := map[string][]string{} // metric: queries
	for _, q := range queries {
		for _, m := range metricNames(q) {
			used[m] = append(used[m], q)
		}
	}
	t.Logf("the dashboard reads %d metrics: %v", len(used), slices.Sorted(maps.Keys(used)))

	needTool(t, "ffmpeg")
	if testing.Short() {
		t.Skip("-short")
	}
	gw := startGateway(t, gatewayBinary(t), "--nats-url", natstest.Start(t))
	done, out := background(t, command(t, lgloadBinary(t), "-url", gw.URL, "-publishers", "1", "-viewers", "2",
		"-chat", "2", "-chat-rate", "1", "-size", "320x180", "-prefix", "dash", "-duration", "20s", "-start-wait", "60s"))
	seen := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	reported, lastReport := false, ""
	for {
		// a viewer's latency report, as the watch page sends it (the
		// publisher's capture clock makes the stream's latency measurable)
		if !reported {
			resp, err := http.Post(gw.URL+"/api/streams/dash0/latency", "application/json", strings.NewReader(`{"latency":1.25}`))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				reported, lastReport = resp.StatusCode == http.StatusOK, fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
			}
		}
		_, names := metrics(t, gw.URL+"/metrics")
		maps.Copy(seen, names)
		missing := missingMetrics(used, seen)
		if len(missing) == 0 {
			return
		}
		select {
		case <-done:
			deadline = time.Now() // lgload ended: one last read above
		default:
		}
		if time.Now().After(deadline) {
			for _, m := range missing {
				t.Errorf("the dashboard reads %s, which the gateway's /metrics does not show (in %q)", m, used[m][0])
			}
			t.Logf("the gateway's /metrics shows: %v\nlatency report: %s\nlgload:\n%s", slices.Sorted(maps.Keys(seen)), lastReport, tail(out.String(), 20))
			return
		}
		time.Sleep(time.Second)
	}
}

// missingMetrics returns the metrics of used that names does not hold.
func missingMetrics(used map[string][]string, names map[string]bool) []string {
	var out []string
	for m := range used {
		if !names[m] {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func TestMissingMetrics(t *testing.T) {
	used := map[string][]string{"a": {"a"}, "go_goroutines": {"go_goroutines"}}
	if got := missingMetrics(used, map[string]bool{"a": true}); !slices.Equal(got, []string{"go_goroutines"}) {
		t.Errorf("missingMetrics: %v", got)
	}
}
