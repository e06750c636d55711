package hardware_test

import (
	"errors"
	"testing"

	"github.com/racklet/rack/controlplane/member"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/reconcilers/hardware"
	"github.com/racklet/rack/sim"
)

// The member is what rackd and devrack run the reconcilers on.
var _ hardware.Member = (*member.Member)(nil)

// TestNewRefusesBadConfig: a configuration that cannot work is refused
// with ErrInvalid, naming what is wrong, before any reconciler exists.
// (The reconcilers at work are tested in their own packages, and wired
// together in sim/devrack and cmd/rackd's TestBinaryHardwareSim.)
func TestNewRefusesBadConfig(t *testing.T) {
	r, err := sim.New(sim.Config{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	bp := r.Backplane()
	for name, cfg := range map[string]hardware.Config{
		"no member":    {Rack: "rack1", Backplane: bp},
		"no backplane": {Member: &member.Member{}, Rack: "rack1"},
		"bad rack":     {Member: &member.Member{}, Rack: "Rack 1", Backplane: bp},
		"firmware without keys": {Member: &member.Member{}, Rack: "rack1", Backplane: bp,
			Firmware: hardware.FirmwareConfig{Images: firmware.Dir(t.TempDir())}},
	} {
		if _, err := hardware.New(cfg); !errors.Is(err, hardware.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
