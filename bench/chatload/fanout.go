package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livegate/livegate/bench/internal/loadgen"
)

// The moderation fan-out mode (-mode moderation): -members clients join the
// room and read every frame; a moderator (?key= or ?token=) joins, and
// each of -rounds rounds it says one message, waits until every member has
// it (and a little more, so that the room's batching is idle), notes the
// time and deletes it. Each member notes when the delete arrives; the
// report gives, over the members of each round and of all rounds, the
// p50, p99 and max of arrival minus send, and how many never got it.

// fanoutReport is the outcome of a moderation fan-out run; it is also the
// -json file in that mode.
type fanoutReport struct {
	URL            string        `json:"url"`
	Members        int           `json:"members"`
	Joined         int64         `json:"joined"`
	Failed         int64         `json:"failed"`
	ConnectSeconds float64       `json:"connect_seconds"`
	Rounds         []fanoutRound `json:"rounds"`
	// All rounds' arrivals together.
	Arrived int      `json:"arrived"`
	Missing int      `json:"missing"`
	P50ms   float64  `json:"p50_ms"`
	P99ms   float64  `json:"p99_ms"`
	MaxMs   float64  `json:"max_ms"`
	Errors  []string `json:"errors,omitempty"`
}

// fanoutRound is one delete's arrivals.
type fanoutRound struct {
	Arrived int     `json:"arrived"`
	Missing int     `json:"missing"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// fanMember is one member: its reader notes when the round's marker
// message and the delete of the round's id arrive.
type fanMember struct {
	conn    *websocket.Conn
	marked  atomic.Int64 // the round whose marker message it has
	deleted atomic.Int64 // UnixNano of the round's delete; 0: not yet
}

// fanRound is what the members' readers look for.
type fanRound struct {
	n      int64
	marker []byte // in the round's message text
	id     atomic.Pointer[string]
}

func runFanout(ctx context.Context, cfg config, log io.Writer) (*fanoutReport, error) {
	rep := &fanoutReport{URL: cfg.url, Members: cfg.members}
	var soft, hard uint64
	for _, w := range raiseNofile(cfg.members+1, &soft, &hard) {
		fmt.Fprintf(log, "chatload: WARNING: %s\n", w)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.connectMax+time.Duration(cfg.rounds)*2*time.Minute)
	defer cancel()
	var round atomic.Pointer[fanRound]
	round.Store(&fanRound{})

	members := make([]*fanMember, cfg.members)
	var joined, failed atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	fail := func(err error) {
		failed.Add(1)
		errMu.Lock()
		if len(firstErrs) < 5 {
			firstErrs = append(firstErrs, err.Error())
		}
		errMu.Unlock()
	}
	var readers sync.WaitGroup
	defer func() {
		for _, m := range members {
			if m != nil {
				m.conn.Close()
			}
		}
		readers.Wait()
	}()

	start := time.Now()
	sem := make(chan struct{}, cfg.pending)
	var dialing sync.WaitGroup
	for i := range members {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		dialing.Go(func() {
			defer func() { <-sem }()
			conn, err := fanJoin(ctx, cfg.url, fmt.Sprintf("fan%06d", i), cfg.joinTimeout)
			if err != nil {
				fail(err)
				return
			}
			m := &fanMember{conn: conn}
			members[i] = m
			joined.Add(1)
			readers.Go(func() { m.read(&round) })
		})
		if i%1000 == 999 {
			fmt.Fprintf(log, "chatload moderation: %d joined, %d failed\n", joined.Load(), failed.Load())
		}
	}
	dialing.Wait()
	rep.ConnectSeconds = time.Since(start).Seconds()
	rep.Joined, rep.Failed = joined.Load(), failed.Load()
	rep.Errors = firstErrs
	fmt.Fprintf(log, "chatload moderation: %d members joined, %d failed, in %.1fs\n", rep.Joined, rep.Failed, rep.ConnectSeconds)
	if rep.Joined == 0 {
		return rep, fmt.Errorf("no member could join %s", cfg.url)
	}

	q := url.Values{}
	if cfg.key != "" {
		q.Set("key", cfg.key)
	}
	if cfg.token != "" {
		q.Set("token", cfg.token)
	}
	modURL := cfg.url + "?" + q.Encode()
	mod, err := fanJoinModerator(ctx, modURL, cfg.joinTimeout)
	if err != nil {
		return rep, err
	}
	defer mod.Close()

	var all []time.Duration
	for n := 1; n <= cfg.rounds && ctx.Err() == nil; n++ {
		r := &fanRound{n: int64(n), marker: fmt.Appendf(nil, "fanout-round-%d-%d", n, time.Now().UnixNano())}
		round.Store(r)
		for _, m := range members {
			if m != nil {
				m.deleted.Store(0)
			}
		}
		id, err := fanSay(mod, string(r.marker))
		if err != nil {
			return rep, err
		}
		r.id.Store(&id)
		if err := waitFor(ctx, 2*time.Minute, func() bool {
			return count(members, func(m *fanMember) bool { return m.marked.Load() == r.n }) == int(rep.Joined)
		}); err != nil {
			fmt.Fprintf(log, "chatload moderation: round %d: not every member got the message: %v\n", n, err)
		}
		time.Sleep(500 * time.Millisecond) // past the room's flush interval: the delete meets an idle room
		sent := time.Now()
		if err := mod.WriteJSON(map[string]string{"type": "delete", "id": id}); err != nil {
			return rep, fmt.Errorf("send the delete: %w", err)
		}
		waitFor(ctx, time.Minute, func() bool {
			return count(members, func(m *fanMember) bool { return m.deleted.Load() != 0 }) == int(rep.Joined)
		})
		var got []time.Duration
		for _, m := range members {
			if m == nil {
				continue
			}
			if at := m.deleted.Load(); at != 0 {
				got = append(got, time.Unix(0, at).Sub(sent))
			}
		}
		fr := summarize(got, int(rep.Joined))
		rep.Rounds = append(rep.Rounds, fr)
		all = append(all, got...)
		fmt.Fprintf(log, "chatload moderation: round %d: %d/%d got the delete, p50 %.1f p99 %.1f max %.1f ms\n",
			n, fr.Arrived, rep.Joined, fr.P50ms, fr.P99ms, fr.MaxMs)
		if err := fanDrain(mod, "delete", id); err != nil {
			return rep, err
		}
	}
	total := summarize(all, int(rep.Joined)*len(rep.Rounds))
	rep.Arrived, rep.Missing, rep.P50ms, rep.P99ms, rep.MaxMs = total.Arrived, total.Missing, total.P50ms, total.P99ms, total.MaxMs
	return rep, ctx.Err()
}

// read reads every frame until the connection ends, noting the round's
// message and delete.
func (m *fanMember) read(round *atomic.Pointer[fanRound]) {
	for {
		_, b, err := m.conn.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		r := round.Load()
		switch {
		case bytes.Contains(b, []byte(`"type":"delete"`)):
			var ev struct{ ID string }
			if id := r.id.Load(); json.Unmarshal(b, &ev) == nil && id != nil && ev.ID == *id {
				m.deleted.CompareAndSwap(0, now.UnixNano())
			}
		case len(r.marker) > 0 && bytes.Contains(b, r.marker):
			m.marked.Store(r.n)
		}
	}
}

// fanJoin dials the room and joins it under name, waiting for the welcome.
func fanJoin(ctx context.Context, u, name string, timeout time.Duration) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 1024, WriteBufferSize: 512}
	conn, resp, err := d.DialContext(ctx, u, http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (%s)", err, resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	if err := conn.WriteJSON(map[string]string{"type": "join", "name": name}); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		var ev struct {
			Type, Code, Message string
			You                 struct{ Role string }
		}
		if err := conn.ReadJSON(&ev); err != nil {
			conn.Close()
			return nil, fmt.Errorf("join: %w", err)
		}
		switch ev.Type {
		case "welcome":
			conn.SetReadDeadline(time.Time{})
			return conn, nil
		case "error":
			conn.Close()
			return nil, fmt.Errorf("join: %s: %s", ev.Code, ev.Message)
		}
	}
}

// fanJoinModerator joins as the moderator and checks the welcome says so.
func fanJoinModerator(ctx context.Context, u string, timeout time.Duration) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout}
	conn, resp, err := d.DialContext(ctx, u, http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("moderator: dial: %w (%s; -key or -token wrong?)", err, resp.Status)
		}
		return nil, fmt.Errorf("moderator: dial: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	conn.WriteJSON(map[string]string{"type": "join", "name": "fanout-moderator"})
	for {
		var ev struct {
			Type string
			You  struct{ Role string }
		}
		if err := conn.ReadJSON(&ev); err != nil {
			conn.Close()
			return nil, fmt.Errorf("moderator: join: %w", err)
		}
		if ev.Type == "welcome" {
			if ev.You.Role != "moderator" {
				conn.Close()
				return nil, errors.New("moderator: joined, but not as a moderator: give -key (publishing not open) or a moderate -token")
			}
			return conn, nil
		}
	}
}

// fanSay sends a message as the moderator and returns its id.
func fanSay(mod *websocket.Conn, text string) (string, error) {
	if err := mod.WriteJSON(map[string]string{"type": "message", "text": text}); err != nil {
		return "", fmt.Errorf("moderator: send: %w", err)
	}
	mod.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		var ev struct{ Type, ID, Text, Code, Message string }
		if err := mod.ReadJSON(&ev); err != nil {
			return "", fmt.Errorf("moderator: its message: %w", err)
		}
		switch {
		case ev.Type == "message" && ev.Text == text:
			return ev.ID, nil
		case ev.Type == "error":
			return "", fmt.Errorf("moderator: %s: %s", ev.Code, ev.Message)
		}
	}
}

// fanDrain reads the moderator's frames up to the event typ of id.
func fanDrain(mod *websocket.Conn, typ, id string) error {
	mod.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		var ev struct{ Type, ID, Code, Message string }
		if err := mod.ReadJSON(&ev); err != nil {
			return fmt.Errorf("moderator: its %s: %w", typ, err)
		}
		switch {
		case ev.Type == typ && ev.ID == id:
			return nil
		case ev.Type == "error":
			return fmt.Errorf("moderator: %s: %s", ev.Code, ev.Message)
		}
	}
}

func count(ms []*fanMember, f func(*fanMember) bool) int {
	n := 0
	for _, m := range ms {
		if m != nil && f(m) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, for at most d.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// summarize gives the quantiles of arrivals, of want expected.
func summarize(got []time.Duration, want int) fanoutRound {
	slices.Sort(got)
	q := func(p float64) float64 {
		if len(got) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(got)))) - 1
		return loadgen.Ms(got[max(i, 0)])
	}
	return fanoutRound{Arrived: len(got), Missing: want - len(got), P50ms: q(0.5), P99ms: q(0.99), MaxMs: q(1)}
}

// print writes the report for people.
func (r *fanoutReport) print(w io.Writer) {
	fmt.Fprintf(w, "chatload moderation fan-out: %s\n", r.URL)
	fmt.Fprintf(w, "  members   %d joined, %d failed of %d in %.1fs\n", r.Joined, r.Failed, r.Members, r.ConnectSeconds)
	for i, fr := range r.Rounds {
		fmt.Fprintf(w, "  round %-3d delete reached %d (missing %d): p50 %.1f p99 %.1f max %.1f ms\n",
			i+1, fr.Arrived, fr.Missing, fr.P50ms, fr.P99ms, fr.MaxMs)
	}
	fmt.Fprintf(w, "  all       %d arrivals (missing %d): p50 %.1f p99 %.1f max %.1f ms\n", r.Arrived, r.Missing, r.P50ms, r.P99ms, r.MaxMs)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error     %s\n", e)
	}
}
