package chat

// Event is room traffic between gateways: what happened, and the frame the
// members get.
type Event struct {
	Gateway string `json:"gw"` // set by the bus: the gateway it came from
	Room    string `json:"room"`
	Kind    string `json:"kind"` // join, leave, nick or message
	User    User   `json:"user"`
	Old     string `json:"old,omitempty"` // nick: the previous name
	ID      string `json:"id,omitempty"`  // message: its id
	Frame   []byte `json:"frame"`         // the encoded event for clients
}

// Handler is what a Bus calls back into: the Server's rooms.
type Handler interface {
	// Deliver applies an event from another gateway.
	Deliver(Event)
	// Presence replaces what is known of a gateway's members, room by room;
	// rooms absent from the map have none of its members. A nil map means
	// the gateway is gone.
	Presence(gateway string, rooms map[string][]User)
	// Local is this gateway's members, room by room, for the others.
	Local() map[string][]User
	// Recent is this gateway's history of a room (encoded message events,
	// oldest first), for another gateway that asks.
	Recent(room string) [][]byte
}

// Bus carries room state and traffic between the gateways that share rooms.
// Each gateway keeps its own view of every room (members, names, history)
// from its members' actions and the events the bus delivers.
type Bus interface {
	// Start begins delivering other gateways' traffic to h.
	Start(h Handler) error
	// Publish sends an event of a local member to the other gateways.
	Publish(Event)
	// History asks the other gateways for a room's recent messages (encoded
	// message events, oldest first), for a room this gateway has just
	// opened; nil when none has any. It may block briefly.
	History(room string) [][]byte
	// Close stops the bus. Idempotent.
	Close()
}

// NewLocalBus returns the in-process bus: one gateway, nothing to carry.
func NewLocalBus() Bus { return localBus{} }

type localBus struct{}

func (localBus) Start(Handler) error     { return nil }
func (localBus) Publish(Event)           {}
func (localBus) History(string) [][]byte { return nil }
func (localBus) Close()                  {}

// handler adapts a Server to Handler.
type handler struct{ s *Server }

func (h handler) Deliver(ev Event) {
	for !h.s.room(ev.Room).remote(ev) {
	}
}

func (h handler) Presence(gw string, rooms map[string][]User) {
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

func (h handler) Local() map[string][]User {
	s := h.s
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	out := map[string][]User{}
	for _, r := range rooms {
		r.mu.Lock()
		for _, m := range r.local {
			out[r.name] = append(out[r.name], m.user)
		}
		r.mu.Unlock()
	}
	return out
}

func (h handler) Recent(name string) [][]byte {
	s := h.s
	s.mu.Lock()
	r := s.rooms[name]
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.history))
	for i, m := range r.history {
		out[i] = m.frame
	}
	return out
}
