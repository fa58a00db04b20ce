package chat

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// room is one chat room on this gateway: its local members and its view of
// every member, wherever connected.
type room struct {
	srv  *Server
	name string

	mu      sync.Mutex
	local   map[string]*member   // this gateway's members by user id
	users   map[string]User      // every member by user id
	gateway map[string]string    // user id -> gateway, for members elsewhere
	added   map[string]time.Time // user id -> when a member elsewhere was added
	names   map[string]string    // lower-case name -> user id
	marks   map[string]mark      // user id -> what a ban of that member matches
	history []recent             // recent message events, oldest first
	freed   bool                 // no longer the Server's room of that name

	// Moderation (moderation.go): the bans by banned user id, the slow-mode
	// interval in seconds (0: off), and the ids of the last messages
	// deleted (a message event that arrives after its delete, from
	// another gateway, is dropped).
	bans    map[string]*Ban
	slow    int
	deleted []string
	gone    []Member // the last members removed, newest last: a moderator may ban one who just left

	// What every welcome holds, encoded once and shared by the welcomes
	// in flight (a join storm has hundreds): the others in the user list,
	// a sample of up to WelcomeUsers-1 members (sampled) kept while none
	// of them leaves or is renamed, each with a leading comma; and the
	// history as a JSON array, until it changes. nil: to encode again.
	others      []byte
	sampled     map[string]bool
	historyJSON []byte

	// Events wait here, each prepared once for every member, for the next
	// flush: at most one write of room traffic per member every
	// Server.FlushInterval (see broadcast).
	out     []*event
	flushed time.Time   // the last flush
	timer   *time.Timer // the next flush, while something waits

	// Joins and leaves since the last flush, in a room over
	// Server.PresenceLimit: the flush sends them as one summary.
	joined, left         int
	joinedSome, leftSome []User // the first presenceNames of them

	fetch sync.Once // asks the other gateways for the room's state, once
}

// mark is what a ban of a member matches: its client address and token
// identity (see Member).
type mark struct{ addr, subject string }

// recent is a message event in a room's history.
type recent struct {
	id    string
	frame []byte
}

func newRoom(s *Server, name string) *room {
	return &room{srv: s, name: name, local: map[string]*member{}, users: map[string]User{},
		gateway: map[string]string{}, added: map[string]time.Time{}, names: map[string]string{},
		marks: map[string]mark{}, bans: map[string]*Ban{}}
}

func (r *room) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.users)
}

func (r *room) localMembers() []*member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*member, 0, len(r.local))
	for _, m := range r.local {
		out = append(out, m)
	}
	return out
}

// presenceNames is how many of the members who joined (and who left)
// since the last summary a summary names.
const presenceNames = 10

// event is a server event prepared once for every member: as a
// gorilla/websocket prepared message, and, once a member's connection has
// framed it, as that frame (see member.writeEvents).
type event struct {
	pm    *websocket.PreparedMessage
	data  []byte
	frame atomic.Pointer[[]byte]
}

// prepare encodes a server event as a WebSocket message, once for every
// member.
func prepare(b []byte) *event {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		panic(fmt.Sprintf("chat: prepare an event: %v", err)) // only compression can fail, and there is none
	}
	return &event{pm: pm, data: b}
}

// broadcast sends one encoded event to every local member but skip, as the
// same prepared message. Called with r.mu held.
//
// Events are batched: an event that comes after a quiet FlushInterval is
// written at once; those that follow closer wait until FlushInterval has
// passed since that write, and then go out together, one write per member
// for the lot (the same frames for every member, each from where it
// joined). A busy room so costs at most one system call per member per
// FlushInterval, however many events it has. The interval shrinks on a
// gateway with few connections (Server.flushWait); one that is not
// positive has always passed: every event is written at once.
func (r *room) broadcast(b []byte, skip *member) {
	if len(r.local) == 0 {
		return
	}
	r.out = append(r.out, prepare(b))
	if skip != nil {
		skip.from = len(r.out)
	}
	r.schedule()
}

// presence tells the local members but skip that u joined or left (kind
// "join" or "leave"; b is that event encoded). A room of at most
// PresenceLimit members gets the event; a bigger one, where a notice for
// each member would cost the square of its size in a join storm and say
// little to anyone, gets it counted in the next flush's summary. Called
// with r.mu held, after the change.
func (r *room) presence(kind string, u User, b []byte, skip *member) {
	if len(r.local) == 0 {
		return
	}
	if len(r.users) <= r.srv.PresenceLimit {
		before := len(r.users) + 1
		if kind == "join" {
			before = len(r.users) - 1
		}
		r.summarize(before) // the changes that came before this one go first
		r.broadcast(b, skip)
		return
	}
	if skip != nil {
		skip.from = len(r.out) // the events before its join are not its
	}
	if kind == "join" {
		r.joined++
		if len(r.joinedSome) < presenceNames {
			r.joinedSome = append(r.joinedSome, u)
		}
	} else {
		r.left++
		if len(r.leftSome) < presenceNames {
			r.leftSome = append(r.leftSome, u)
		}
	}
	r.schedule()
}

// schedule makes sure a flush comes: now, or once FlushInterval has passed
// since the last. Called with r.mu held.
func (r *room) schedule() {
	if r.timer != nil {
		return // a flush is due
	}
	if wait := time.Until(r.flushed.Add(r.srv.flushWait())); wait > 0 {
		r.timer = time.AfterFunc(wait, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.flush()
		})
		return
	}
	r.flush()
}

// summarize adds the summary of the joins and leaves not yet told, if
// any, to the waiting events; count is the room's size after them. Called
// with r.mu held.
func (r *room) summarize(count int) {
	if r.joined+r.left == 0 {
		return
	}
	r.out = append(r.out, prepare(frame(presenceSummary{Type: "presence", Count: count,
		Joined: r.joined, Left: r.left, JoinedUsers: r.joinedSome, LeftUsers: r.leftSome})))
	r.joined, r.left, r.joinedSome, r.leftSome = 0, 0, nil, nil
}

// cut sends m its part of the waiting events now, so that a frame for it
// alone can follow them. Called with r.mu held.
func (r *room) cut(m *member) {
	if len(r.out) > m.from {
		m.send(outItem{batch: r.out[m.from:]})
	}
	m.from = len(r.out)
}

// flush sends the waiting events, and the presence summary last, to the
// local members. Called with r.mu held.
func (r *room) flush() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.summarize(len(r.users))
	if len(r.out) == 0 {
		return
	}
	out := r.out
	r.out, r.flushed = nil, time.Now()
	for _, m := range r.local {
		if len(out) > m.from {
			m.send(outItem{batch: out[m.from:]})
		}
		m.from = 0
	}
}

func (r *room) add(mb Member, gw string) {
	u := mb.User
	r.users[u.ID] = u
	r.names[strings.ToLower(u.Name)] = u.ID
	r.marks[u.ID] = mark{mb.Addr, mb.Subject}
	if gw != "" {
		r.gateway[u.ID] = gw
		r.added[u.ID] = time.Now()
	}
}

func (r *room) remove(id string) (User, bool) {
	u, ok := r.users[id]
	if !ok {
		return u, false
	}
	delete(r.users, id)
	if r.sampled[id] {
		r.others = nil
	}
	if len(r.gone) >= keepLeft {
		r.gone = slices.Delete(r.gone, 0, 1)
	}
	r.gone = append(r.gone, Member{User: u, Addr: r.marks[id].addr, Subject: r.marks[id].subject})
	delete(r.gateway, id)
	delete(r.added, id)
	delete(r.marks, id)
	if r.names[strings.ToLower(u.Name)] == id {
		delete(r.names, strings.ToLower(u.Name))
	}
	return u, true
}

// join adds a local member: it gets the welcome, everyone else the join.
func (r *room) join(m *member, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.freed {
		return errRoomFreed
	}
	if !m.mod {
		if b := r.banned(m.addr, m.subject, time.Now()); b != nil {
			return &banError{b.Until}
		}
	}
	if _, taken := r.names[strings.ToLower(name)]; taken {
		return errNameTaken
	}
	m.user = User{ID: newID(), Name: name}
	if m.mod {
		m.user.Role = RoleModerator
	}
	r.add(m.member(), "")
	r.local[m.user.ID] = m
	m.send(outItem{parts: r.welcome(m)})
	ev := frame(presenceEvent{Type: "join", User: m.user, Count: len(r.users)})
	r.presence("join", m.user, ev, m)
	r.srv.Bus.Publish(Event{Room: r.name, Kind: "join", User: m.user, Addr: m.addr, Subject: m.subject, Frame: ev})
	return nil
}

// welcome encodes m's welcome, {"type":"welcome","you":U,"users":[U,...],
// "count":N,"history":[...],"slow":S,"max_text":M} (slow: the slow-mode
// interval in seconds, 0 when off; the extension max_text is MaxTextRunes,
// for the page's counter), in parts: the big ones, the
// others and the history, are the room's, shared with other welcomes.
// Called with r.mu held, m added.
func (r *room) welcome(m *member) [][]byte {
	you := frame(m.user)
	return [][]byte{
		fmt.Appendf(nil, `{"type":"welcome","you":%s,"users":[%s`, you, you),
		r.welcomeOthers(m),
		fmt.Appendf(nil, `],"count":%d,"history":`, len(r.users)),
		r.welcomeHistory(),
		fmt.Appendf(nil, `,"slow":%d,"max_text":%d}`, r.slow, r.srv.MaxTextRunes),
	}
}

// welcomeOthers returns the others of a welcome's user list (see
// room.others), encoding them again when a sampled member has gone or the
// sample could hold more. Called with r.mu held.
func (r *room) welcomeOthers(m *member) []byte {
	limit := min(r.srv.WelcomeUsers-1, len(r.users)-1) // m is not one of the others
	if r.others != nil && len(r.sampled) == limit {
		return r.others
	}
	r.others, r.sampled = []byte{}, make(map[string]bool, limit)
	for id, u := range r.users {
		if len(r.sampled) == limit {
			break
		}
		if id != m.user.ID {
			r.others = append(append(r.others, ','), frame(u)...)
			r.sampled[id] = true
		}
	}
	return r.others
}

// welcomeHistory returns the history as a JSON array (see
// room.historyJSON). Called with r.mu held.
func (r *room) welcomeHistory() []byte {
	if r.historyJSON == nil {
		b := []byte{'['}
		for i, h := range r.history {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, h.frame...)
		}
		r.historyJSON = append(b, ']')
	}
	return r.historyJSON
}

// leave removes a local member and tells everyone.
func (r *room) leave(m *member) {
	r.mu.Lock()
	if r.local[m.user.ID] != m {
		r.mu.Unlock()
		return
	}
	delete(r.local, m.user.ID)
	r.remove(m.user.ID)
	ev := frame(presenceEvent{Type: "leave", User: m.user, Count: len(r.users)})
	r.presence("leave", m.user, ev, nil)
	r.srv.Bus.Publish(Event{Room: r.name, Kind: "leave", User: m.user, Frame: ev})
	r.mu.Unlock()
	r.srv.dropIfEmpty(r)
}

// rename gives a local member a new name and tells everyone.
func (r *room) rename(m *member, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, taken := r.names[strings.ToLower(name)]; taken && id != m.user.ID {
		return errNameTaken
	}
	old := m.user.Name
	r.remove(m.user.ID)
	m.user.Name = name
	r.add(m.member(), "")
	ev := frame(nickEvent{Type: "nick", User: m.user, Old: old})
	r.broadcast(ev, nil)
	r.srv.Bus.Publish(Event{Room: r.name, Kind: "nick", User: m.user, Old: old, Frame: ev})
	return nil
}

// say sends a message from a local member to everyone, the sender too,
// unless slow mode holds it back: then it returns how long the member must
// wait.
func (r *room) say(m *member, text string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.slow > 0 && !m.mod {
		if wait := m.lastSaid.Add(time.Duration(r.slow) * time.Second).Sub(now); wait > 0 {
			return wait
		}
	}
	m.lastSaid = now
	id := newID()
	ev := frame(messageEvent{Type: "message", ID: id, User: m.user, Text: text,
		TS: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")})
	r.remember(recent{id, ev})
	r.broadcast(ev, nil)
	r.srv.Bus.Publish(Event{Room: r.name, Kind: "message", User: m.user, ID: id, Frame: ev})
	return 0
}

func (r *room) remember(m recent) {
	if r.srv.HistorySize == 0 {
		return
	}
	if len(r.history) >= r.srv.HistorySize {
		copy(r.history, r.history[1:])
		r.history = r.history[:len(r.history)-1]
	}
	r.history = append(r.history, m)
	r.historyJSON = nil
}

// catchup asks the other gateways, on the room's first local join, what
// they know of it: the messages sent before this gateway saw the room (a
// gateway started late has seen none, or only the last few), merged in by
// id, the bans in force and slow mode. Joins wait for the answer (the bus
// bounds the wait; alone, it answers at once).
func (r *room) catchup() {
	r.fetch.Do(func() {
		got := r.srv.Bus.Catchup(r.name)
		r.mu.Lock()
		defer r.mu.Unlock()
		for i := range got.Bans {
			r.keepBan(&got.Bans[i])
		}
		if r.slow == 0 {
			r.slow = got.Slow
		}
		if r.srv.HistorySize == 0 || len(got.History) == 0 {
			return
		}
		// the fetched messages come first; any this gateway has seen that
		// they lack follow
		merged := make([]recent, 0, len(got.History)+r.srv.HistorySize)
		seen := map[string]bool{}
		for _, f := range got.History {
			var m struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			}
			if json.Unmarshal(f, &m) != nil || m.Type != "message" || m.ID == "" || seen[m.ID] || r.wasDeleted(m.ID) {
				continue
			}
			seen[m.ID] = true
			merged = append(merged, recent{m.ID, f})
		}
		for _, h := range r.history {
			if !seen[h.id] {
				merged = append(merged, h)
			}
		}
		if n := len(merged) - r.srv.HistorySize; n > 0 {
			merged = merged[n:]
		}
		r.history, r.historyJSON = merged, nil
	})
}

// remote applies an event from another gateway and passes it on to the
// local members. It reports false, doing nothing, if the room was freed.
func (r *room) remote(ev Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.freed {
		return false
	}
	switch ev.Kind {
	case "join":
		r.add(Member{User: ev.User, Addr: ev.Addr, Subject: ev.Subject}, ev.Gateway)
		r.presence(ev.Kind, ev.User, ev.Frame, nil)
		return true
	case "leave":
		if _, ok := r.remove(ev.User.ID); !ok {
			return true
		}
		r.presence(ev.Kind, ev.User, ev.Frame, nil)
		return true
	case "nick":
		mk := r.marks[ev.User.ID]
		r.remove(ev.User.ID)
		r.add(Member{User: ev.User, Addr: mk.addr, Subject: mk.subject}, ev.Gateway)
	case "message":
		for _, h := range r.history {
			if h.id == ev.ID {
				return true // already had from another gateway's history
			}
		}
		if r.wasDeleted(ev.ID) {
			return true // deleted before it came
		}
		r.remember(recent{ev.ID, ev.Frame})
	case "delete", "ban", "unban", "slow", "clear":
		r.applyModeration(ev)
		return true
	default:
		return true
	}
	r.broadcast(ev.Frame, nil)
	return true
}

// staleReport is how old a gateway's membership report may be relative to
// the events it sent: members added more recently are not removed by it.
const staleReport = 2 * time.Second

// reconcile makes the room's view of a gateway's members match what that
// gateway reports (nil: it is gone): missing members leave, with a notice.
// It reports false, doing nothing, if the room was freed.
func (r *room) reconcile(gw string, members []Member, gone bool) bool {
	r.mu.Lock()
	if r.freed {
		r.mu.Unlock()
		return false
	}
	present := map[string]bool{}
	for _, u := range members {
		present[u.ID] = true
	}
	for id, g := range r.gateway {
		if g != gw {
			continue
		}
		if present[id] || (!gone && time.Since(r.added[id]) < staleReport) {
			continue // present, or newer than a report that may predate it
		}
		u, _ := r.remove(id)
		r.presence("leave", u, frame(presenceEvent{Type: "leave", User: u, Count: len(r.users)}), nil)
	}
	for _, u := range members {
		if _, known := r.users[u.ID]; !known {
			r.add(u, gw) // joined before this gateway listened
		}
	}
	r.mu.Unlock()
	r.srv.dropIfEmpty(r)
	return true
}
