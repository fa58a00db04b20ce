package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// chat timing: how long one client may take to join, and how long after
// the window lgload waits for late deliveries.
const (
	chatJoinTimeout = 15 * time.Second
	chatDrain       = 3 * time.Second
)

// joinChat gives every stream a room of cfg.Chat clients in /chat/{stream}
// and connects all rooms at once, each within cfg.StartWait. The upgrades
// carry the gateway's own origin, as its pages do. Whoever calls it must
// call closeChat.
func joinChat(ctx context.Context, cfg config, base string, streams []*stream, stderr io.Writer) error {
	if cfg.Chat == 0 {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("lgload: chat: %w", err)
	}
	if each := cfg.ChatRate / float64(cfg.Chat); each > gatewayChatRate {
		fmt.Fprintf(stderr, "lgload: -chat-rate %g over %d clients is %.1f messages/s each, above the gateway's default limit of %d/s: expect rate_limited\n",
			cfg.ChatRate, cfg.Chat, each, gatewayChatRate)
	}
	wsBase := "ws" + strings.TrimPrefix(base, "http")
	deadline := time.Now().Add(cfg.StartWait + cfg.Duration + chatDrain + time.Minute)
	var wg sync.WaitGroup
	for _, s := range streams {
		room := &loadgen.ChatRoom{URL: wsBase + "/chat/" + s.name, Origin: u.Scheme + "://" + u.Host,
			Clients: cfg.Chat, Senders: cfg.Chat, Name: "lgload", JoinTimeout: chatJoinTimeout,
			ConnectMax: cfg.StartWait, Deadline: deadline}
		if err := room.Start(); err != nil {
			return fmt.Errorf("lgload: %w", err)
		}
		s.chat = room
		wg.Go(func() { room.Connect(ctx) })
	}
	wg.Wait()
	for _, s := range streams {
		if c := s.chat.Counts(); c.Failed > 0 {
			fmt.Fprintf(stderr, "lgload: chat %s: %d of %d clients could not join: %s\n",
				s.name, c.Failed, cfg.Chat, strings.Join(s.chat.Errors(), "; "))
		}
	}
	return nil
}

// runChat sends cfg.ChatRate messages per second in every room for
// cfg.Duration and waits up to chatDrain for their deliveries.
func runChat(ctx context.Context, cfg config, streams []*stream) {
	var wg sync.WaitGroup
	for _, s := range streams {
		if s.chat != nil {
			wg.Go(func() { s.chatStep = s.chat.RunStep(ctx, 0, cfg.ChatRate, cfg.Duration, chatDrain) })
		}
	}
	wg.Wait()
}

// closeChat closes every room.
func closeChat(streams []*stream, stderr io.Writer) {
	for _, s := range streams {
		if s.chat != nil {
			if err := s.chat.Close(); err != nil {
				fmt.Fprintf(stderr, "lgload: %v\n", err)
			}
		}
	}
}

// chatReport is what one room's clients (or all rooms') saw.
type chatReport struct {
	Clients   int     `json:"clients"`
	Joined    int64   `json:"joined"`
	Sent      int64   `json:"sent"`
	Expected  int64   `json:"expected"`  // deliveries due: sent (less rejected) x clients reading
	Delivered int64   `json:"delivered"` // every member, the sender too, gets each message
	P50       float64 `json:"delivery_p50_ms"`
	P99       float64 `json:"delivery_p99_ms"`
	Max       float64 `json:"delivery_max_ms"`
	// Errors are failed joins, failed sends and error frames from the
	// server (rate_limited among them).
	Errors      int64    `json:"errors"`
	RateLimited int64    `json:"rate_limited"`
	Closes      int64    `json:"unexpected_closes"` // connections the server or network ended early
	Kinds       []string `json:"error_kinds,omitempty"`
}

// add sums o into c, quantiles aside.
func (c *chatReport) add(o *chatReport) {
	c.Clients += o.Clients
	c.Joined += o.Joined
	c.Sent += o.Sent
	c.Expected += o.Expected
	c.Delivered += o.Delivered
	c.Errors += o.Errors
	c.RateLimited += o.RateLimited
	c.Closes += o.Closes
	c.Kinds = append(c.Kinds, o.Kinds...)
}

// setLatency fills the quantiles from h.
func (c *chatReport) setLatency(h *loadgen.Histogram) {
	c.P50, c.P99, c.Max = loadgen.Ms(h.Quantile(0.5)), loadgen.Ms(h.Quantile(0.99)), loadgen.Ms(h.Max())
}

// roomReport reports the room of s, nil when it has none.
func roomReport(s *stream) *chatReport {
	if s.chat == nil {
		return nil
	}
	c := s.chat.Counts()
	st := s.chatStep
	r := &chatReport{Clients: s.chat.Clients, Joined: c.Connected, Sent: st.Sent, Expected: st.Expected,
		Delivered: st.Delivered, Errors: c.Failed + st.SendErrors + c.ErrorFrames,
		RateLimited: c.RateLimited, Closes: c.Closes, Kinds: s.chat.Errors()}
	r.setLatency(s.chat.Latency(0))
	return r
}

// chatProgress sums the rooms' joins, sends and deliveries so far.
func chatProgress(streams []*stream) (joined, clients, sent, delivered int64) {
	for _, s := range streams {
		if s.chat == nil {
			continue
		}
		joined += s.chat.Counts().Connected
		clients += int64(s.chat.Clients)
		sn, d := s.chat.StepTotals(0)
		sent, delivered = sent+sn, delivered+d
	}
	return joined, clients, sent, delivered
}
