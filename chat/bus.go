package chat

import (
	"encoding/json"
	"time"
)

// Event is room traffic between gateways: what happened, and the frame the
// members get.
type Event struct {
	Gateway string `json:"gw"` // set by the bus: the gateway it came from
	Room    string `json:"room"`
	// Kind is join, leave, nick, message, or a moderator's delete, ban,
	// unban, slow or clear.
	Kind string `json:"kind"`
	User User   `json:"user"`
	Old  string `json:"old,omitempty"` // nick: the previous name
	ID   string `json:"id,omitempty"`  // message and delete: the message's id
	// Addr and Subject are a joining member's client address and token
	// identity (see Member), for bans on every gateway.
	Addr    string `json:"addr,omitempty"`
	Subject string `json:"sub,omitempty"`
	Ban     *Ban   `json:"ban,omitempty"`     // ban: the ban
	Seconds int    `json:"seconds,omitempty"` // slow: the interval, 0 for off
	Frame   []byte `json:"frame"`             // the encoded event for clients
}

// Member is a room member as the gateways tell each other: the user, and
// what a ban matches (never shown to clients).
type Member struct {
	User
	// Addr is the member's client address (behind trusted proxies).
	Addr string `json:"addr,omitempty"`
	// Subject is the identity of the member's token: "name:" and its name
	// claim, or "token:" and a hash of the token; "" without a token.
	Subject string `json:"sub,omitempty"`
}

// Ban keeps a banned member's identity out of a room until it ends.
type Ban struct {
	User    User      `json:"user"` // the member banned
	By      User      `json:"by"`   // the moderator
	Seconds int       `json:"seconds"`
	Until   time.Time `json:"until"`
	Addr    string    `json:"addr,omitempty"` // the member's, as in Member
	Subject string    `json:"sub,omitempty"`
}

// Snapshot is what a gateway knows of a room that another one, whose room
// is new, catches up with.
type Snapshot struct {
	// History is the recent messages, encoded message events, oldest first.
	History []json.RawMessage `json:"history"`
	// Bans are the bans in force.
	Bans []Ban `json:"bans,omitempty"`
	// Slow is the slow-mode interval in seconds; 0: off.
	Slow int `json:"slow,omitempty"`
}

// Handler is what a Bus calls back into: the Server's rooms.
type Handler interface {
	// Deliver applies an event from another gateway.
	Deliver(Event)
	// Presence replaces what is known of a gateway's members, room by room;
	// rooms absent from the map have none of its members. A nil map means
	// the gateway is gone.
	Presence(gateway string, rooms map[string][]Member)
	// Local is this gateway's members, room by room, for the others.
	Local() map[string][]Member
	// State is what this gateway knows of a room (history, bans, slow
	// mode), for another gateway that asks.
	State(room string) Snapshot
}

// Bus carries room state and traffic between the gateways that share rooms.
// Each gateway keeps its own view of every room (members, names, history,
// bans, slow mode) from its members' actions and the events the bus
// delivers.
type Bus interface {
	// Start begins delivering other gateways' traffic to h.
	Start(h Handler) error
	// Publish sends an event of a local member to the other gateways.
	Publish(Event)
	// Catchup asks the other gateways what they know of a room (its
	// recent messages, bans and slow mode), for a room this gateway has
	// just opened; empty when none knows anything. It may block briefly.
	Catchup(room string) Snapshot
	// Close stops the bus. Idempotent.
	Close()
}

// NewLocalBus returns the in-process bus: one gateway, nothing to carry.
func NewLocalBus() Bus { return localBus{} }

type localBus struct{}

func (localBus) Start(Handler) error     { return nil }
func (localBus) Publish(Event)           {}
func (localBus) Catchup(string) Snapshot { return Snapshot{} }
func (localBus) Close()                  {}

// handler adapts a Server to Handler.
type handler struct{ s *Server }

func (h handler) Deliver(ev Event) {
	for !h.s.room(ev.Room).remote(ev) {
	}
}

func (h handler) Presence(gw string, rooms map[string][]Member) {
	s := h.s
	s.mu.Lock()
	names := make(map[string]bool, len(s.rooms)+len(rooms))
	for name := range s.rooms {
		names[name] = true
	}
	s.mu.Unlock()
	for name := range rooms {
		names[name] = true
	}
	for name := range names {
		if members, ok := rooms[name]; ok || s.Users(name) > 0 {
			for !s.room(name).reconcile(gw, members, rooms == nil) {
			}
		}
	}
}

func (h handler) Local() map[string][]Member {
	s := h.s
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	out := map[string][]Member{}
	for _, r := range rooms {
		r.mu.Lock()
		for _, m := range r.local {
			out[r.name] = append(out[r.name], Member{User: m.user, Addr: m.addr, Subject: m.subject})
		}
		r.mu.Unlock()
	}
	return out
}

func (h handler) State(name string) Snapshot {
	s := h.s
	s.mu.Lock()
	r := s.rooms[name]
	s.mu.Unlock()
	if r == nil {
		return Snapshot{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := Snapshot{History: make([]json.RawMessage, len(r.history)), Slow: r.slow}
	for i, m := range r.history {
		out.History[i] = m.frame
	}
	now := time.Now()
	for _, b := range r.bans {
		if b.Until.After(now) {
			out.Bans = append(out.Bans, *b)
		}
	}
	return out
}
