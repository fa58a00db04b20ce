package loadgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestDialIngestRefusesOtherHosts(t *testing.T) {
	for _, u := range []string{"ws://10.0.0.1:8080/ingest/x", "ws://example.com/ingest/x", "http://127.0.0.1/ingest/x"} {
		if _, err := DialIngest(context.Background(), u); err == nil {
			t.Errorf("DialIngest(%q): no error", u)
		}
	}
}

// TestPumpErrors: a failing send ends the pump with its error, and a read
// error other than EOF is returned after what was read is sent.
func TestPumpErrors(t *testing.T) {
	boom := errors.New("boom")
	err := Pump(context.Background(), strings.NewReader("abc"), time.Hour, func([]byte) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("send error: got %v", err)
	}
	var got bytes.Buffer
	r := io.MultiReader(strings.NewReader("xyz"), errReader{io.ErrUnexpectedEOF})
	err = Pump(context.Background(), r, time.Hour, func(b []byte) error { got.Write(b); return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) || got.String() != "xyz" {
		t.Errorf("read error: got %v, sent %q", err, got.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	if err := Pump(ctx, pr, time.Hour, func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
