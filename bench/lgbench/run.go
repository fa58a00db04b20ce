package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// run performs every measurement and returns the report, partial when an
// error cut it short.
func run(ctx context.Context, o options, logf *log.Logger) (*report, error) {
	tmp, err := os.MkdirTemp("", "lgbench-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	rep := newReport(o)

	var b *browser
	if !o.skipBrowser {
		if b, err = startBrowser(tmp, o.browserNice); err != nil {
			return rep, err
		}
		defer b.close()
	}

	if err := runGateway(ctx, o, tmp, b, rep, logf); err != nil {
		return rep, err
	}
	if !o.skipReference {
		logf.Print("reference: ffmpeg -f hls, 1 s segments, served as files")
		p, err := runReference(ctx, o, tmp, b, logf)
		if err != nil {
			return rep, err
		}
		rep.Reference = newSide(p)
		rep.RefCPU = p.cpu
	}
	rep.judge()
	return rep, nil
}

// runGateway measures the gateway: the main pass with CPU sampling, then the
// startup of the other sources.
func runGateway(ctx context.Context, o options, tmp string, b *browser, rep *report, logf *log.Logger) error {
	addr := o.addr
	var gw *gatewayProc
	if addr == "" {
		bin := o.gateway
		if bin == "" {
			logf.Print("building ./cmd/livegate")
			var err error
			if bin, err = buildGateway(ctx, tmp); err != nil {
				return err
			}
		}
		var err error
		if gw, err = startGateway(ctx, bin, o.config, tmp); err != nil {
			return err
		}
		defer gw.stop()
		addr = gw.addr
		logf.Printf("gateway pid %d on %s", gw.pid(), addr)
	}

	var cpu *cpuSampler
	if gw != nil {
		var err error
		if cpu, err = startCPUSampler(gw); err != nil {
			logf.Printf("no CPU figures: %v", err)
		}
	}
	p, err := gatewayPass(ctx, o, addr, "bench-"+o.codec, o.codec, o.duration, b, false, logf)
	if cpu != nil {
		rep.CPU = cpu.stop(p)
	}
	if err != nil {
		if gw != nil {
			err = fmt.Errorf("%w\ngateway log (end):\n%s", err, gw.logTail(3000))
		}
		return err
	}
	rep.Livegate = newSide(p)
	rep.Startup[o.codec] = p.Startup
	if b != nil && !o.skipExternal {
		// the same gateway watched as a third-party site embeds it: hls.js
		// with its default configuration, on another origin
		ext, err := startRefServer(tmp, o.hlsjs)
		if err != nil {
			return err
		}
		stream := "bench-ext-" + o.codec
		page := ext.base + "/?src=" + url.QueryEscape("http://"+addr+"/live/"+stream+"/index.m3u8")
		logf.Print("livegate, watched by a default hls.js on another origin")
		ep, err := gatewayPassPage(ctx, o, addr, stream, o.codec, o.duration, b, false, page, logf)
		ext.close()
		if err != nil {
			return err
		}
		rep.External = newSide(ep)
		rep.Startup[o.codec+" (second pass)"] = ep.Startup
	}
	for _, c := range o.startupCodecs {
		sp, err := gatewayPass(ctx, o, addr, "bench-startup-"+c, c, 20*time.Second, nil, true, logf)
		if err != nil {
			return err
		}
		rep.Startup[c] = sp.Startup
	}
	return nil
}

// gatewayPass publishes to ws://addr/ingest/stream, follows the stream's
// 720p media playlist and watches /watch/stream in b (if not nil).
func gatewayPass(ctx context.Context, o options, addr, stream, codec string, dur time.Duration, b *browser, startupOnly bool, logf *log.Logger) (*pass, error) {
	return gatewayPassPage(ctx, o, addr, stream, codec, dur, b, startupOnly, "http://"+addr+"/watch/"+stream, logf)
}

// gatewayPassPage is gatewayPass with the viewer on page.
func gatewayPassPage(ctx context.Context, o options, addr, stream, codec string, dur time.Duration, b *browser, startupOnly bool, page string, logf *log.Logger) (*pass, error) {
	in, err := loadgen.DialIngest(ctx, "ws://"+addr+"/ingest/"+stream)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	base := "http://" + addr
	hello := false
	ep := endpoint{
		name: "livegate",
		// the capture clock: media time zero is the first byte sent, as
		// for the listing delays
		send: func(b []byte) error {
			if !hello {
				hello = true
				if err := in.Hello("video/webm", time.Now()); err != nil {
					return err
				}
			}
			return in.Send(b)
		},
		finish:   in.Close,
		playable: masterPlayable(&http.Client{}, base+"/live/"+stream+"/index.m3u8"),
		blocking: true,
		page:     page,
	}
	p, err := measure(ctx, ep, passConfig{ffmpeg: o.ffmpeg, codec: codec, dur: dur, join: o.join,
		browser: b, startupOnly: startupOnly, playerJS: o.playerJS}, logf)
	st := in.Status()
	if err != nil {
		if st.LastError != "" || st.CloseCode != 0 {
			err = fmt.Errorf("%w (ingest error %q, close %d %q)", err, st.LastError, st.CloseCode, st.CloseText)
		}
		return nil, err
	}
	if !st.Live.IsZero() {
		p.Live = st.Live.Sub(p.w0).Seconds()
	}
	p.Speeds = st.Speeds
	return p, nil
}

// runReference measures ffmpeg's HLS muxer serving files, with a plain
// hls.js page.
func runReference(ctx context.Context, o options, tmp string, b *browser, logf *log.Logger) (*pass, error) {
	dir := filepath.Join(tmp, "reference")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	srv, err := startRefServer(dir, o.hlsjs)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	segCtx, cancel := context.WithTimeout(ctx, o.duration+2*time.Minute)
	defer cancel()
	seg, err := startSegmenter(segCtx, o.ffmpeg, dir)
	if err != nil {
		return nil, err
	}
	var finishErr error
	finished := false
	finish := func() {
		if !finished {
			finished = true
			finishErr = seg.finish()
		}
	}
	defer finish()
	ep := endpoint{
		name:     "ffmpeg-hls",
		send:     seg.send,
		finish:   finish,
		playable: mediaPlayable(&http.Client{}, srv.base+"/hls/index.m3u8"),
		page:     srv.base + "/",
	}
	cpu, err := startCPUSampler(nil)
	if err != nil {
		logf.Printf("no CPU figures: %v", err)
	}
	p, err := measure(ctx, ep, passConfig{ffmpeg: o.ffmpeg, codec: o.codec, dur: o.duration, join: o.join,
		browser: b, playerJS: o.playerJS}, logf)
	if p != nil {
		p.cpu = cpu.stop(p)
	} else {
		cpu.stop(nil)
	}
	if err == nil && finishErr != nil {
		logf.Print(finishErr)
	}
	return p, err
}
