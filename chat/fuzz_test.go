package chat

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
)

// FuzzCommand sends one arbitrary client frame from a moderator and from a
// viewer of a room (both joined, with a message in the history). The server
// must not fail: both connections still carry the room's traffic (a probe
// message from the moderator reaches both), and a well-formed moderator's
// command from the viewer is refused with forbidden. Seeds: below and
// testdata/fuzz/FuzzCommand.
func FuzzCommand(f *testing.F) {
	for _, seed := range []string{
		`{"type":"delete","id":"0123456789abcdef"}`,
		`{"type":"delete"}`,
		`{"type":"ban","user":"0123456789abcdef","seconds":0}`,
		`{"type":"ban","user":"","seconds":-5}`,
		`{"type":"ban","user":"x","seconds":1e30}`,
		`{"type":"unban","user":"0123456789abcdef"}`,
		`{"type":"slow","seconds":5}`,
		`{"type":"slow","seconds":999999999}`,
		`{"type":"slow","seconds":"5"}`,
		`{"type":"clear"}`,
		`{"type":"message","text":"/nick <b>x</b>"}`,
		`{"type":"join","name":"again"}`,
		`{"type":"nick","name":"\u0000"}`,
		`{"type":"CLEAR"}`,
		`{"type":null}`,
		`[]`,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	s := moderated(&Server{RatePerSecond: 1e6, Burst: 1e6, MaxViolations: 1e6, FlushInterval: -1})
	hs := startServer(f, s)
	n := 0
	f.Fuzz(func(t *testing.T, cmd []byte) {
		if len(cmd) > 1024 {
			t.Skip("bigger than a frame may be") // TestLimits has those
		}
		n++
		room := fmt.Sprint("fuzz", n)
		mod, _ := joinAs(t, hs, room, "mod", as{query: "key=k"})
		viewer, _ := joinAs(t, hs, room, "viewer", as{addr: "192.0.2.1"})
		viewer.send(map[string]string{"type": "message", "text": "hello"})
		mod.expectText("hello")

		var in inbound
		wellFormed := json.Unmarshal(cmd, &in) == nil && isModeration(in.Type)
		if err := viewer.conn.WriteMessage(websocket.TextMessage, cmd); err != nil {
			t.Fatal(err)
		}
		if wellFormed {
			viewer.expectError("forbidden")
		}
		if err := mod.conn.WriteMessage(websocket.TextMessage, cmd); err != nil {
			t.Fatal(err)
		}
		mod.send(map[string]string{"type": "message", "text": "probe"})
		for _, c := range []*client{mod, viewer} {
			c.expectText("probe")
		}
		mod.conn.Close()
		viewer.conn.Close()
	})
}
