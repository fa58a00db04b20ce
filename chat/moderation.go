package chat

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// Moderation, as the contract has it. A moderator's command changes its
// room on this gateway, goes to every local member as an event, and to the
// other gateways over the Bus, which apply it the same way (remote).
//
//   - delete {"id"}: the message leaves the history; every member gets
//     {"type":"delete","id","by"}. An id the room does not know is told
//     all the same (the message may have left the history but not the
//     screens).
//   - ban {"user","seconds"}: a member present in the room (on any
//     gateway) or among the last keepLeft to leave it, not a moderator, for seconds (0 or absent: 24 hours; at
//     most Server.MaxBan). Every member gets {"type":"ban","user","by",
//     "seconds"}; the local members whose client address or token identity
//     match the ban's get error banned and close 1008, and a join that
//     matches it is refused with banned until it ends. A room keeps at
//     most Server.MaxBans bans; one more replaces the one ending first.
//   - unban {"user"}: lifts the ban of that user id; every member gets
//     {"type":"unban","user","by"}.
//   - slow {"seconds"}: each non-moderator may send one message per
//     seconds (at most Server.MaxSlow; 0: off); every member gets
//     {"type":"slow","seconds","by"}.
//   - clear: the history is emptied; every member gets {"type":"clear",
//     "by"}.
//
// A room with bans in force or slow mode outlives its members.

// isModeration reports whether a client frame's type is a moderator's
// command.
func isModeration(typ string) bool {
	switch typ {
	case "delete", "ban", "unban", "slow", "clear":
		return true
	}
	return false
}

// defaultBan is the length of a ban asked for with 0 or no seconds.
const defaultBan = 24 * time.Hour

// keepDeleted is how many deleted message ids a room remembers, and
// keepLeft how many members who left (whom a moderator may still ban).
const (
	keepDeleted = 100
	keepLeft    = 100
)

// banError refuses a join that a ban matches.
type banError struct{ until time.Time }

func (e *banError) Error() string {
	left := time.Until(e.until)
	if left > 90*time.Minute {
		return fmt.Sprintf("you are banned from this chat for %d more hours", int((left+time.Hour-1)/time.Hour))
	}
	return fmt.Sprintf("you are banned from this chat for %d more minutes", int((left+time.Minute-1)/time.Minute))
}

type moderationEvent struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`   // delete
	User    *User  `json:"user,omitempty"` // ban, unban
	By      User   `json:"by"`
	Seconds *int   `json:"seconds,omitempty"` // ban, slow
}

// moderator reports whether m may moderate now (its moderator token, if
// it has one, has not expired).
func (m *member) moderator() bool {
	return m.mod && (m.expires.IsZero() || time.Now().Before(m.expires))
}

// moderate runs a moderator's command; false: refused (answered).
func (m *member) moderate(in inbound) bool {
	if !m.moderator() {
		m.violation("forbidden", in.Type+" is for moderators")
		return false
	}
	if !m.allow() {
		return false
	}
	var err error
	switch in.Type {
	case "delete":
		err = m.room.deleteMessage(m, in.ID)
	case "ban":
		err = m.room.ban(m, in.User, in.Seconds)
	case "unban":
		err = m.room.unban(m, in.User)
	case "slow":
		err = m.room.setSlow(m, in.Seconds)
	case "clear":
		m.room.clear(m)
	}
	if err != nil {
		m.violation("bad_request", err.Error())
		return false
	}
	return true
}

// member is m as the gateways tell each other. Called with its room's
// lock held, or before it joins.
func (m *member) member() Member {
	return Member{User: m.user, Addr: m.addr, Subject: m.subject}
}

// find returns a member of the room by user id, or one of the last
// keepLeft who left. Called with r.mu held.
func (r *room) find(id string) (Member, bool) {
	if u, ok := r.users[id]; ok {
		return Member{User: u, Addr: r.marks[id].addr, Subject: r.marks[id].subject}, true
	}
	for i := len(r.gone) - 1; i >= 0; i-- {
		if r.gone[i].ID == id {
			return r.gone[i], true
		}
	}
	return Member{}, false
}

// slowMode is the slow-mode interval in seconds.
func (r *room) slowMode() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slow
}

// moderated reports whether the room holds moderation that outlives its
// members: bans in force, or slow mode. Called with r.mu held.
func (r *room) moderated(now time.Time) bool {
	if r.slow > 0 {
		return true
	}
	for _, b := range r.bans {
		if b.Until.After(now) {
			return true
		}
	}
	return false
}

// expireBans forgets the bans that have ended. Called with r.mu held.
func (r *room) expireBans(now time.Time) {
	for id, b := range r.bans {
		if !b.Until.After(now) {
			delete(r.bans, id)
		}
	}
}

// banned returns the ban in force that a client address or token identity
// matches, or nil. Called with r.mu held.
func (r *room) banned(addr, subject string, now time.Time) *Ban {
	for _, b := range r.bans {
		if b.Until.After(now) && b.matches(addr, subject) {
			return b
		}
	}
	return nil
}

// matches reports whether a client address or token identity is the
// banned member's.
func (b *Ban) matches(addr, subject string) bool {
	return addr != "" && addr == b.Addr || subject != "" && subject == b.Subject
}

// keepBan stores a ban (one for the same user replaces it), making room
// for it within MaxBans. Called with r.mu held.
func (r *room) keepBan(b *Ban) {
	now := time.Now()
	if !b.Until.After(now) {
		return
	}
	r.expireBans(now)
	if _, ok := r.bans[b.User.ID]; !ok && len(r.bans) >= r.srv.MaxBans {
		var first *Ban
		for _, o := range r.bans {
			if first == nil || o.Until.Before(first.Until) {
				first = o
			}
		}
		delete(r.bans, first.User.ID)
	}
	r.bans[b.User.ID] = b
}

// kick closes the local members, moderators excepted, that a ban matches:
// each gets what waits for it, error banned, and a close 1008. Called with
// r.mu held, after the ban's event was queued.
func (r *room) kick(b *Ban) {
	err := (&banError{b.Until}).Error()
	for id, m := range r.local {
		if m.mod || id != b.User.ID && !b.matches(m.addr, m.subject) {
			continue
		}
		r.cut(m)
		m.send(text(frame(errorEvent{Type: "error", Code: "banned", Message: err})))
		m.send(closeItem(websocket.ClosePolicyViolation, "banned"))
	}
}

// moderation sends a moderator's event to the local members and the other
// gateways. Called with r.mu held.
func (r *room) moderation(ev Event) {
	r.broadcast(ev.Frame, nil)
	r.srv.Bus.Publish(ev)
}

func (r *room) deleteMessage(m *member, id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("delete needs the message's id")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropMessage(id)
	r.moderation(Event{Room: r.name, Kind: "delete", User: m.user, ID: id,
		Frame: frame(moderationEvent{Type: "delete", ID: id, By: m.user})})
	return nil
}

// dropMessage takes a message out of the history, and remembers it was
// deleted. Called with r.mu held.
func (r *room) dropMessage(id string) {
	if i := slices.IndexFunc(r.history, func(h recent) bool { return h.id == id }); i >= 0 {
		r.history = slices.Delete(r.history, i, i+1)
		r.historyJSON = nil
	}
	if len(r.deleted) >= keepDeleted {
		r.deleted = slices.Delete(r.deleted, 0, 1)
	}
	r.deleted = append(r.deleted, id)
}

// wasDeleted reports whether a message was deleted lately. Called with
// r.mu held.
func (r *room) wasDeleted(id string) bool {
	return slices.Contains(r.deleted, id)
}

func (r *room) ban(m *member, userID string, seconds int) error {
	if seconds < 0 {
		return errors.New("ban: seconds must be 0 (24 hours) or more")
	}
	d := defaultBan
	if seconds > 0 {
		d = time.Duration(min(seconds, int(r.srv.MaxBan/time.Second))) * time.Second
	}
	d = min(d, r.srv.MaxBan)
	r.mu.Lock()
	defer r.mu.Unlock()
	mk, ok := r.find(userID)
	u := mk.User
	switch {
	case !ok:
		return errors.New("ban: no such member here")
	case u.Role == RoleModerator:
		return errors.New("ban: moderators cannot be banned")
	}
	secs := int(d / time.Second)
	b := &Ban{User: u, By: m.user, Seconds: secs, Until: time.Now().Add(d), Addr: mk.Addr, Subject: mk.Subject}
	r.keepBan(b)
	r.moderation(Event{Room: r.name, Kind: "ban", User: m.user, Ban: b,
		Frame: frame(moderationEvent{Type: "ban", User: &u, By: m.user, Seconds: &secs})})
	r.kick(b)
	return nil
}

func (r *room) unban(m *member, userID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.bans[userID]
	if !ok {
		return errors.New("unban: that user is not banned")
	}
	delete(r.bans, userID)
	r.moderation(Event{Room: r.name, Kind: "unban", User: m.user, ID: userID,
		Frame: frame(moderationEvent{Type: "unban", User: &b.User, By: m.user})})
	return nil
}

func (r *room) setSlow(m *member, seconds int) error {
	if seconds < 0 || seconds > int(r.srv.MaxSlow/time.Second) {
		return fmt.Errorf("slow: seconds from 0 (off) to %d", int(r.srv.MaxSlow/time.Second))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slow = seconds
	r.moderation(Event{Room: r.name, Kind: "slow", User: m.user, Seconds: seconds,
		Frame: frame(moderationEvent{Type: "slow", By: m.user, Seconds: &seconds})})
	return nil
}

func (r *room) clear(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history, r.historyJSON = nil, nil
	r.moderation(Event{Room: r.name, Kind: "clear", User: m.user,
		Frame: frame(moderationEvent{Type: "clear", By: m.user})})
}

// applyModeration applies another gateway's moderation event and passes it
// on to the local members. Called with r.mu held.
func (r *room) applyModeration(ev Event) {
	switch ev.Kind {
	case "delete":
		r.dropMessage(ev.ID)
	case "ban":
		if ev.Ban == nil {
			return
		}
		r.keepBan(ev.Ban)
		r.broadcast(ev.Frame, nil)
		r.kick(ev.Ban)
		return
	case "unban":
		delete(r.bans, ev.ID)
	case "slow":
		r.slow = ev.Seconds
	case "clear":
		r.history, r.historyJSON = nil, nil
	}
	r.broadcast(ev.Frame, nil)
}
