package stream

import (
	"testing"
	"time"

	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/web"
)

// TestCaptureDated: a run is ingest.Captured, and the broadcast tells the
// web package whether its newest run is dated by a capture clock.
func TestCaptureDated(t *testing.T) {
	h := startHub(t, nil)
	out, err := h.Open("dated", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	dated := func() bool { return out.(web.CaptureDated).CaptureDated() }
	if dated() {
		t.Error("dated before any run")
	}
	run, err := out.Transcode(ingest.ContainerWebM, 640, 360)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { run.CloseInput(); run.Wait() }()
	c, ok := run.(ingest.Captured)
	if !ok {
		t.Fatal("a run is not ingest.Captured: capture clocks would be ignored")
	}
	if dated() {
		t.Error("dated before the publisher told its clock")
	}
	c.CaptureStart(time.Now())
	if !dated() {
		t.Error("not dated after CaptureStart")
	}
}
