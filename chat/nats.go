package chat

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS subjects of the bus.
const (
	subjectEvents   = "livegate.chat.events"
	subjectPresence = "livegate.chat.presence"
	subjectHistory  = "livegate.chat.history" // request: historyRequest; reply: a JSON array of message events (gateways before moderation ask this)
	subjectState    = "livegate.chat.state"   // request: historyRequest; reply: a Snapshot
)

// NATSBus shares rooms between gateways through a NATS server. Each gateway
// publishes its members' events, and every HeartbeatInterval its full
// membership; a gateway silent for ExpireAfter is taken as gone and its
// members leave the rooms on the others. NATS keeps the order of one
// publisher's messages, so each sender's messages arrive in order, once.
//
// Catching up: every gateway keeps each room's recent messages, bans and
// slow mode from the events it sees. The first join of a room on a gateway
// asks the other gateways (request/reply, at most HistoryWait) and merges
// the longest history with what it has, by message id, and every ban in
// force: a gateway started late still shows the messages sent before it,
// and refuses the members banned before it.
//
// Limits: names are checked for uniqueness against the members this gateway
// knows, so two gateways admitting the same name within one network round
// trip can both succeed (best effort: both keep it). Messages from
// different gateways may interleave differently on each. The first second
// of a gateway's life it may not know the others' members yet.
type NATSBus struct {
	URL               string
	HeartbeatInterval time.Duration // default 1 s
	ExpireAfter       time.Duration // default 3 heartbeats
	HistoryWait       time.Duration // longest wait for the others' history; default 500 ms
	Logger            *slog.Logger

	id      string
	nc      *nats.Conn
	h       Handler
	started time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	mu   sync.Mutex
	seen map[string]time.Time // gateway -> last heartbeat
}

// NewNATSBus returns a bus on the NATS server at url; Start connects.
func NewNATSBus(url string, log *slog.Logger) (*NATSBus, error) {
	if url == "" {
		return nil, fmt.Errorf("nats bus: empty url")
	}
	return &NATSBus{URL: url, Logger: log}, nil
}

type presenceMsg struct {
	Gateway string              `json:"gw"`
	Rooms   map[string][]Member `json:"rooms"`
}

type historyRequest struct {
	Gateway string `json:"gw"`
	Room    string `json:"room"`
}

// Start connects and subscribes.
func (b *NATSBus) Start(h Handler) error {
	if b.HeartbeatInterval == 0 {
		b.HeartbeatInterval = time.Second
	}
	if b.ExpireAfter == 0 {
		b.ExpireAfter = 3 * b.HeartbeatInterval
	}
	if b.HistoryWait == 0 {
		b.HistoryWait = 500 * time.Millisecond
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	b.id, b.h, b.stop, b.seen, b.started = newID(), h, make(chan struct{}), map[string]time.Time{}, time.Now()
	nc, err := nats.Connect(b.URL, nats.Name("livegate-chat-"+b.id), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats connect %s: %w", b.URL, err)
	}
	b.nc = nc
	if _, err := nc.Subscribe(subjectEvents, b.onEvent); err != nil {
		nc.Close()
		return fmt.Errorf("nats subscribe: %w", err)
	}
	if _, err := nc.Subscribe(subjectPresence, b.onPresence); err != nil {
		nc.Close()
		return fmt.Errorf("nats subscribe: %w", err)
	}
	if _, err := nc.Subscribe(subjectHistory, b.onHistory); err != nil {
		nc.Close()
		return fmt.Errorf("nats subscribe: %w", err)
	}
	if _, err := nc.Subscribe(subjectState, b.onState); err != nil {
		nc.Close()
		return fmt.Errorf("nats subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return fmt.Errorf("nats flush: %w", err)
	}
	b.wg.Add(1)
	go b.heartbeat()
	return nil
}

func (b *NATSBus) onEvent(msg *nats.Msg) {
	var ev Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.Gateway == b.id || ev.Gateway == "" {
		return
	}
	b.alive(ev.Gateway) // a gateway heard from only by its events can expire too
	b.h.Deliver(ev)
}

func (b *NATSBus) onPresence(msg *nats.Msg) {
	var p presenceMsg
	if err := json.Unmarshal(msg.Data, &p); err != nil || p.Gateway == b.id || p.Gateway == "" {
		return
	}
	b.alive(p.Gateway)
	if p.Rooms == nil {
		p.Rooms = map[string][]Member{}
	}
	b.h.Presence(p.Gateway, p.Rooms)
}

// onHistory answers another gateway's request for a room's history (a
// gateway of an earlier version: this one asks for the whole state).
func (b *NATSBus) onHistory(msg *nats.Msg) {
	var req historyRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil || req.Gateway == b.id || msg.Reply == "" {
		return
	}
	out := b.h.State(req.Room).History
	if out == nil {
		out = []json.RawMessage{}
	}
	data, _ := json.Marshal(out)
	if err := msg.Respond(data); err != nil {
		b.Logger.Warn("nats history reply", "room", req.Room, "error", err)
	}
}

// onState answers another gateway's request for what this one knows of a
// room.
func (b *NATSBus) onState(msg *nats.Msg) {
	var req historyRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil || req.Gateway == b.id || msg.Reply == "" {
		return
	}
	data, _ := json.Marshal(b.h.State(req.Room))
	if err := msg.Respond(data); err != nil {
		b.Logger.Warn("nats state reply", "room", req.Room, "error", err)
	}
}

// Catchup implements Bus: it asks every gateway it knows of (or, in its
// first ExpireAfter, when it may not know them yet, waits for at least one
// answer), waiting at most HistoryWait, and merges the answers: the
// longest history, every ban (by user id, the one that ends last), the
// longest slow-mode interval.
func (b *NATSBus) Catchup(room string) Snapshot {
	b.mu.Lock()
	want := len(b.seen)
	b.mu.Unlock()
	if want == 0 {
		if time.Since(b.started) > b.ExpireAfter {
			return Snapshot{} // alone
		}
		want = 1
	}
	sub, err := b.nc.SubscribeSync(b.nc.NewInbox())
	if err != nil {
		b.Logger.Warn("nats catchup", "room", room, "error", err)
		return Snapshot{}
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(historyRequest{Gateway: b.id, Room: room})
	if err := b.nc.PublishRequest(subjectState, sub.Subject, req); err != nil {
		b.Logger.Warn("nats catchup", "room", room, "error", err)
		return Snapshot{}
	}
	var out Snapshot
	bans := map[string]Ban{}
	deadline := time.Now().Add(b.HistoryWait)
	for got := 0; got < want; got++ {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break // time is up
		}
		var s Snapshot
		if json.Unmarshal(msg.Data, &s) != nil {
			continue
		}
		if len(s.History) > len(out.History) {
			out.History = s.History
		}
		out.Slow = max(out.Slow, s.Slow)
		for _, ban := range s.Bans {
			if old, ok := bans[ban.User.ID]; !ok || ban.Until.After(old.Until) {
				bans[ban.User.ID] = ban
			}
		}
	}
	for _, ban := range bans {
		out.Bans = append(out.Bans, ban)
	}
	return out
}

func (b *NATSBus) alive(gw string) {
	b.mu.Lock()
	b.seen[gw] = time.Now()
	b.mu.Unlock()
}

// heartbeat publishes this gateway's membership and expires silent ones.
func (b *NATSBus) heartbeat() {
	defer b.wg.Done()
	t := time.NewTicker(b.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		data, _ := json.Marshal(presenceMsg{Gateway: b.id, Rooms: b.h.Local()})
		if err := b.nc.Publish(subjectPresence, data); err != nil {
			b.Logger.Warn("nats heartbeat", "error", err)
		}
		var gone []string
		b.mu.Lock()
		for gw, at := range b.seen {
			if time.Since(at) > b.ExpireAfter {
				gone = append(gone, gw)
				delete(b.seen, gw)
			}
		}
		b.mu.Unlock()
		for _, gw := range gone {
			b.Logger.Info("gateway silent, its chat members leave", "gateway", gw)
			b.h.Presence(gw, nil)
		}
	}
}

// Publish implements Bus.
func (b *NATSBus) Publish(ev Event) {
	ev.Gateway = b.id
	data, _ := json.Marshal(ev)
	if err := b.nc.Publish(subjectEvents, data); err != nil {
		b.Logger.Warn("nats publish", "error", err)
	}
}

// Close implements Bus.
func (b *NATSBus) Close() {
	b.once.Do(func() {
		if b.stop == nil {
			return
		}
		close(b.stop)
		b.wg.Wait()
		b.nc.Close()
	})
}
