package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// stream is one publisher and its viewers.
type stream struct {
	name    string
	pub     *pubStats
	viewers []*viewerStats
	ready   time.Duration // from publishing to a playable multivariant
	readyOK bool
	// media, reloads and edge are the viewers' request latencies and live
	// edge distances (see viewerStats).
	media, reloads, edge loadgen.Histogram
	// delivery is the viewers' delay from a file's first listing to the
	// end of its download; listed the listings, probe the prober's counts.
	delivery loadgen.Histogram
	listed   listings
	probe    probeStats
	chat     *loadgen.ChatRoom // nil without -chat
	chatStep loadgen.ChatStep  // set once the chat window is over
}

// runLoad runs the scenario of cfg, prints a progress line every second on
// stderr and the summary on stdout, and writes the JSON report.
func runLoad(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	rep, err := load(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	printSummary(stdout, rep)
	if cfg.JSON != "" {
		if err := loadgen.WriteJSON(cfg.JSON, rep); err != nil {
			return err
		}
	}
	return nil
}

// load runs the scenario and returns its report.
func load(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	base := strings.TrimRight(cfg.URL, "/")
	origin := base
	if cfg.Origin != "" {
		origin = strings.TrimRight(cfg.Origin, "/")
	}
	wsBase := "ws" + strings.TrimPrefix(origin, "http")
	drawtext := cfg.Replay == "" && hasDrawtext(ctx, cfg.FFmpeg)
	if cfg.Replay == "" && !drawtext {
		fmt.Fprintln(stderr, "lgload: ffmpeg has no drawtext filter: publishing the test pattern without the clock")
	}
	rep := &report{Config: reportConfig{URL: base, Publishers: cfg.Publishers, ViewersPerStream: cfg.Viewers,
		Duration: cfg.Duration.String(), Mode: cfg.Mode, Replay: cfg.Replay, Size: cfg.Size, Drawtext: drawtext,
		ChatPerStream: cfg.Chat, ChatRate: cfg.ChatRate, Origin: origin, Publish: cfg.Publish, Audio: cfg.Audio, Probe: cfg.Probe,
		LateMs: loadgen.Ms(cfg.Late)}}
	if cfg.GatewayPID > 0 {
		if self, kids, _, err := treeUsage(cfg.GatewayPID); err == nil {
			rep.Gateway = &gatewayReport{RSSIdleMB: mb(self.RSS + kids.RSS)}
		} else {
			fmt.Fprintf(stderr, "lgload: -gateway-pid: %v\n", err)
		}
	}

	// Publishers run until the viewers are done (or their deadline).
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	seconds := (cfg.StartWait + cfg.Duration + 15*time.Second).Seconds()
	streams := make([]*stream, cfg.Publishers)
	var pubs sync.WaitGroup
	t0 := time.Now()
	for i := range streams {
		s := &stream{name: cfg.Prefix + strconv.Itoa(i), pub: &pubStats{}}
		streams[i] = s
		if !cfg.Publish {
			continue
		}
		p := &publisher{FFmpeg: cfg.FFmpeg, Args: sourceArgs(cfg.Size, cfg.Replay, seconds, drawtext),
			URL: wsBase + "/ingest/" + s.name + keyQuery(cfg.Key), Chunk: 100 * time.Millisecond, Stats: s.pub,
			Deadline: time.Duration(seconds)*time.Second + 10*time.Second}
		pubs.Go(func() {
			if err := p.run(pubCtx); err != nil {
				fmt.Fprintf(stderr, "lgload: %v\n", err)
			}
		})
	}
	defer pubs.Wait()

	// Wait until every stream is playable (at the origin).
	client := &http.Client{Timeout: 15 * time.Second}
	var waits sync.WaitGroup
	for _, s := range streams {
		waits.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, cfg.StartWait)
			defer cancel()
			if _, _, err := loadgen.WaitPlaylist(wctx, client, origin+"/live/"+s.name+"/index.m3u8", "#EXT-X-STREAM-INF", 200*time.Millisecond); err == nil {
				s.ready, s.readyOK = time.Since(t0), true
			}
		})
	}
	waits.Wait()
	client.CloseIdleConnections()
	for _, s := range streams {
		if !s.readyOK {
			fmt.Fprintf(stderr, "lgload: stream %s not playable after %s\n", s.name, cfg.StartWait)
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("lgload: %w", ctx.Err())
	}
	// The probers follow the streams at the origin until the viewers stop.
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	var probes sync.WaitGroup
	probeTr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	defer probeTr.CloseIdleConnections()
	for _, s := range streams {
		if !s.readyOK || !cfg.Probe {
			continue
		}
		pr := &prober{Client: &http.Client{Transport: probeTr}, Index: origin + "/live/" + s.name + "/index.m3u8",
			Listed: &s.listed, Stats: &s.probe}
		probes.Go(func() { pr.run(probeCtx) })
	}
	defer probes.Wait()
	var before usageSample
	if rep.Gateway != nil {
		loadgen.Sleep(ctx, 2*time.Second) // let the transcoders settle
		before = sampleUsage(cfg.GatewayPID, streams)
		rep.Gateway.RSSStreamsMB = mb(before.gw.RSS + before.kids.RSS)
		rep.Gateway.GatewayRSSStreamsMB = mb(before.gw.RSS)
		rep.Gateway.TranscodersRSSMB = mb(before.kids.RSS)
		rep.Gateway.Transcoders = before.nkids
	}

	// Chat clients join before the window; their memory is measured apart.
	if cfg.Chat > 0 {
		defer closeChat(streams, stderr)
		if err := joinChat(ctx, cfg, base, streams, stderr); err != nil {
			return nil, err
		}
		if rep.Gateway != nil {
			streamsRSS := before.gw.RSS
			before = sampleUsage(cfg.GatewayPID, streams)
			rep.Gateway.RSSChatMB = mb(before.gw.RSS + before.kids.RSS)
			rep.Gateway.RSSPerChatKB = round3(float64(before.gw.RSS-streamsRSS) / 1024 / float64(cfg.Chat*cfg.Publishers))
		}
	}

	// Viewers.
	vctx, stopViewers := context.WithTimeout(ctx, cfg.Duration)
	defer stopViewers()
	var views sync.WaitGroup
	var transports []*http.Transport
	for _, s := range streams {
		for j := range cfg.Viewers {
			vs := &viewerStats{media: &s.media, reloads: &s.reloads, edge: &s.edge, delivery: &s.delivery}
			s.viewers = append(s.viewers, vs)
			tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true, IdleConnTimeout: 30 * time.Second}
			transports = append(transports, tr)
			v := &viewer{Client: &http.Client{Transport: tr}, Index: base + "/live/" + s.name + "/index.m3u8",
				Pick: j, LL: cfg.Mode == "ll", Audio: cfg.Audio, Listed: &s.listed, Late: cfg.Late, Stats: vs}
			views.Go(func() {
				if err := v.run(vctx); err != nil && vctx.Err() == nil {
					vs.mu.Lock()
					vs.errors++
					vs.lastErr = err.Error()
					vs.mu.Unlock()
				}
			})
		}
	}
	w0 := time.Now()
	selfCPU0 := selfCPU()
	chatDone := make(chan struct{})
	go func() {
		defer close(chatDone)
		runChat(ctx, cfg, streams)
	}()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(vctx, stderr, w0, streams)
	}()
	views.Wait()
	<-vctx.Done() // the window lasts the whole duration, with or without viewers
	stopViewers()
	stopProbes()
	probes.Wait()
	<-progressDone
	window := time.Since(w0)
	rep.Window = round3(window.Seconds())
	rep.LoadCPU = round3(selfCPU() - selfCPU0)
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	if rep.Gateway != nil {
		after := sampleUsage(cfg.GatewayPID, streams)
		g := rep.Gateway
		g.RSSViewersMB = mb(after.gw.RSS + after.kids.RSS)
		g.GatewayRSSViewersMB = mb(after.gw.RSS)
		g.GatewayCPU = round3((after.gw.CPU - before.gw.CPU) / window.Seconds())
		g.TranscodersCPU = round3((after.kids.CPU - before.kids.CPU) / window.Seconds())
		rep.SourcesCPU = round3((after.sources.CPU - before.sources.CPU) / window.Seconds())
		rep.SourcesRSSMB = mb(after.sources.RSS)
		if n := cfg.Viewers * cfg.Publishers; n > 0 {
			g.RSSPerViewerKB = round3(float64(after.gw.RSS-before.gw.RSS) / 1024 / float64(n))
		}
		g.RSSPerStreamMB = round3((g.RSSStreamsMB - g.RSSIdleMB) / float64(cfg.Publishers))
	}
	rep.LoadCPU = round3(rep.LoadCPU / window.Seconds())
	<-chatDone // at most chatDrain after the window
	closeChat(streams, stderr)
	stopPubs()
	pubs.Wait()
	rep.fill(streams, window)
	return rep, nil
}

// keyQuery returns the query that carries a publish key, "" for none.
func keyQuery(key string) string {
	if key == "" {
		return ""
	}
	return "?key=" + url.QueryEscape(key)
}

// usageSample is the gateway's, its children's and our sources' usage.
type usageSample struct {
	gw, kids, sources procUsage
	nkids             int
}

// sampleUsage reads /proc for the gateway pid and the publishers' ffmpegs.
func sampleUsage(pid int, streams []*stream) usageSample {
	var u usageSample
	u.gw, u.kids, u.nkids, _ = treeUsage(pid)
	for _, s := range streams {
		s.pub.mu.Lock()
		fp := s.pub.ffmpegPID
		s.pub.mu.Unlock()
		if fp == 0 {
			continue
		}
		if p, err := readProc(fp); err == nil {
			u.sources.CPU += p.CPU
			u.sources.RSS += p.RSS
		}
	}
	return u
}

// progress prints one line a second on w until ctx ends: elapsed time,
// publishers live and their lowest speed, viewer throughput and requests.
func progress(ctx context.Context, w io.Writer, t0 time.Time, streams []*stream) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastBytes int64
	var lastReq int
	last := t0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			live, low := 0, 0.0
			var bytes int64
			var reqs, stalls, errs int
			for _, s := range streams {
				state, speed, _ := s.pub.snapshot()
				if state == "live" {
					live++
					if low == 0 || speed < low {
						low = speed
					}
				}
				for _, v := range s.viewers {
					v.mu.Lock()
					bytes += v.bytes
					reqs += v.requests
					stalls += v.stalls.count + v.astalls.count
					errs += v.errors
					v.mu.Unlock()
				}
			}
			dt := now.Sub(last).Seconds()
			line := fmt.Sprintf("lgload: %5.1fs  publishers live %d/%d min speed %.2f  viewers %.1f MB/s %.0f req/s  stalls %d  errors %d",
				now.Sub(t0).Seconds(), live, len(streams), low,
				float64(bytes-lastBytes)/dt/1e6, float64(reqs-lastReq)/dt, stalls, errs)
			if joined, clients, sent, delivered := chatProgress(streams); clients > 0 {
				line += fmt.Sprintf("  chat joined %d/%d sent %d delivered %d", joined, clients, sent, delivered)
			}
			fmt.Fprintln(w, line)
			lastBytes, lastReq, last = bytes, reqs, now
		}
	}
}
