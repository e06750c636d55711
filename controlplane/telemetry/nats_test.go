package telemetry

import (
	"fmt"
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/natsserver"
	"github.com/racklet/rack/internal/testutil"
)

// TestNATSRoundTrip: a sample published on racklet.<rack>.telemetry
// reaches a subscriber's Latest; garbage and another rack's samples on
// the subject are dropped.
func TestNATSRoundTrip(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Config{Name: "m1", Rack: "rack1", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	pub, err := srv.Connect("publisher")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	sub, err := srv.Connect("subscriber")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)

	l := NewLatest(nil)
	if _, err := Subscribe(sub, "rack1", l, nil); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	// In order on one connection: garbage, a good sample from m2, a sample
	// of another rack from m9, then a sentinel from m9 older than that
	// one. Had the other rack's sample been kept, the older sentinel of the
	// same sampler would be refused; it must be what is kept in the end.
	if err := pub.Publish(Subject("rack1"), []byte(`{"rack":`)); err != nil {
		t.Fatal(err)
	}
	if err := Publish(pub, sample("m2", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	other := sample("m9", t0.Add(time.Hour))
	other.Rack = "rack2"
	b, _ := Encode(other)
	if err := pub.Publish(Subject("rack1"), b); err != nil {
		t.Fatal(err)
	}
	sentinel := sample("m9", t0.Add(2*time.Minute))
	if err := Publish(pub, sentinel); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		s, _, ok := l.Get()
		if !ok || s.Member != "m9" || s.Rack != "rack1" {
			return fmt.Errorf("kept %s/%s, want the sentinel rack1/m9", s.Rack, s.Member)
		}
		if len(s.Nodes) != 2 || s.Nodes[0].Joules != 100 || !s.Time.Equal(sentinel.Time) {
			t.Fatalf("received %+v", s)
		}
		return nil
	})
}
