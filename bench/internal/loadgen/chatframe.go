package loadgen

import (
	"bytes"
	"strconv"
)

// frameKind says what a server frame is, as far as a ChatRoom cares.
type frameKind int

const (
	frameOther   frameKind = iota // anything else (nick, unknown)
	frameMessage                  // a message sent by this ChatRoom's clients (any room of this run)
	frameForeign                  // a message a ChatRoom cannot date (someone else's)
	frameJoin
	frameLeave
	framePresence // livegate's summary of joins and leaves in a big room
	frameError
	frameWelcome
)

// frame is what parseFrame extracts from a server frame.
type frame struct {
	kind frameKind
	sent int64  // frameMessage: send time, Unix nanoseconds
	step int    // frameMessage: step index
	code string // frameError: the error code
}

var (
	typeMessage  = []byte(`"type":"message"`)
	typeJoin     = []byte(`"type":"join"`)
	typeLeave    = []byte(`"type":"leave"`)
	typePresence = []byte(`"type":"presence"`)
	typeError    = []byte(`"type":"error"`)
	typeWelcome  = []byte(`"type":"welcome"`)
	keyText      = []byte(`"text":"`)
	keyCode      = []byte(`"code":"`)
)

// textSuffix ends every message text a ChatRoom sends.
const textSuffix = " chatload"

// appendText appends the JSON of a chat message whose text is
// "<sent> <step> chatload".
func appendText(b []byte, sent int64, step int) []byte {
	b = append(b, `{"type":"message","text":"`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, textSuffix...)
	return append(b, `"}`...)
}

// parseFrame classifies a server frame (or the first bytes of a long one)
// without a full JSON decode: with 10,000 clients it runs millions of times
// a second. It relies on compact JSON ("type":"message", no spaces), which
// both servers write, and on the ChatRoom choosing every name and text, so
// these markers cannot appear inside a string. A welcome frame is only
// recognised, never parsed: its history holds messages too.
func parseFrame(b []byte) frame {
	switch {
	case bytes.Contains(b, typeWelcome):
		return frame{kind: frameWelcome}
	case bytes.Contains(b, typeMessage):
		sent, step, ok := parseText(b)
		if !ok {
			return frame{kind: frameForeign}
		}
		return frame{kind: frameMessage, sent: sent, step: step}
	case bytes.Contains(b, typeJoin):
		return frame{kind: frameJoin}
	case bytes.Contains(b, typeLeave):
		return frame{kind: frameLeave}
	case bytes.Contains(b, typePresence):
		return frame{kind: framePresence}
	case bytes.Contains(b, typeError):
		return frame{kind: frameError, code: stringAfter(b, keyCode)}
	}
	return frame{kind: frameOther}
}

// parseText reads "<sent> <step> chatload" from the text field.
func parseText(b []byte) (sent int64, step int, ok bool) {
	i := bytes.Index(b, keyText)
	if i < 0 {
		return 0, 0, false
	}
	t := b[i+len(keyText):]
	sent, t, ok = leadingInt(t)
	if !ok || len(t) == 0 || t[0] != ' ' {
		return 0, 0, false
	}
	n, t, ok := leadingInt(t[1:])
	if !ok || !bytes.HasPrefix(t, []byte(textSuffix+`"`)) {
		return 0, 0, false
	}
	return sent, int(n), true
}

// leadingInt parses the decimal digits at the start of b (at most 19).
func leadingInt(b []byte) (int64, []byte, bool) {
	var v int64
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	return v, b[i:], i > 0
}

// stringAfter returns the string value that follows key, up to the next
// quote, or "" when key is absent.
func stringAfter(b, key []byte) string {
	i := bytes.Index(b, key)
	if i < 0 {
		return ""
	}
	v := b[i+len(key):]
	if j := bytes.IndexByte(v, '"'); j >= 0 {
		return string(v[:j])
	}
	return ""
}
