package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// benchReport is the result of a -bench-get run.
type benchReport struct {
	URLs        int     `json:"urls"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	LastError   string  `json:"last_error,omitempty"`
	ReqPerSec   float64 `json:"requests_per_s"`
	MBPerSec    float64 `json:"mb_per_s"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	LoadCPU     float64 `json:"lgload_cpu"` // cores used by lgload itself
}

// readURLs reads one loopback URL a line from path; blank lines and lines
// starting with # are skipped.
func readURLs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench-get: %w", err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := loadgen.CheckURL(line, "http"); err != nil {
			return nil, fmt.Errorf("bench-get: %s: %w", path, err)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench-get: %s: no URL", path)
	}
	return out, nil
}

// runBenchGet fetches the URLs of cfg.BenchGet with cfg.Concurrency
// keep-alive clients, each going round the list from its own offset, for
// cfg.Duration, then prints and writes the result.
func runBenchGet(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	urls, err := readURLs(cfg.BenchGet)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2,
		MaxConnsPerHost: cfg.Concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var h loadgen.Histogram
	type result struct {
		n, errs int
		bytes   int64
		lastErr string
	}
	results := make([]result, cfg.Concurrency)
	cpu0 := selfCPU()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range results {
		r := &results[i]
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for k := i; ctx.Err() == nil; k++ {
				u := urls[k%len(urls)]
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := client.Do(req)
				var n int64
				if err == nil {
					n, err = io.CopyBuffer(io.Discard, resp.Body, buf)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.errs++
					r.lastErr = fmt.Sprintf("get %s: %v", u, err)
					continue
				}
				h.Record(time.Since(start))
				r.n++
				r.bytes += n
			}
		})
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	rep := benchReport{URLs: len(urls), Concurrency: cfg.Concurrency, Seconds: round3(secs),
		LoadCPU: round3((selfCPU() - cpu0) / secs)}
	var bytes int64
	for i := range results {
		r := &results[i]
		rep.Requests += r.n
		rep.Errors += r.errs
		bytes += r.bytes
		if r.lastErr != "" {
			rep.LastError = r.lastErr
		}
	}
	rep.ReqPerSec = round3(float64(rep.Requests) / secs)
	rep.MBPerSec = round3(float64(bytes) / secs / 1e6)
	rep.P50, rep.P99, rep.Max = loadgen.Ms(h.Quantile(0.5)), loadgen.Ms(h.Quantile(0.99)), loadgen.Ms(h.Max())
	fmt.Fprintf(stdout, "bench-get: %d URLs, %d clients, %.1f s: %.0f req/s, %.1f MB/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d errors, lgload %.2f cores\n",
		rep.URLs, rep.Concurrency, rep.Seconds, rep.ReqPerSec, rep.MBPerSec, rep.P50, rep.P99, rep.Max, rep.Errors, rep.LoadCPU)
	if rep.LastError != "" {
		fmt.Fprintf(stderr, "bench-get: last error: %s\n", rep.LastError)
	}
	if cfg.JSON != "" {
		return loadgen.WriteJSON(cfg.JSON, rep)
	}
	return nil
}
