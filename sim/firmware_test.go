package sim_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/racklet/rack/drivers"
	"github.com/racklet/rack/firmware"
	"github.com/racklet/rack/sim"
)

func firmwareBus(t *testing.T, r *sim.Rack) *sim.FirmwareBus {
	t.Helper()
	b, err := r.FirmwareBus(sim.FirmwareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readReg does a Block Read and decodes the frame.
func readReg(b *sim.FirmwareBus, addr uint16, reg firmware.Register) ([]byte, error) {
	r := make([]byte, firmware.ReadLen(reg))
	if err := b.Tx(addr, firmware.ReadRequest(reg), r); err != nil {
		return nil, err
	}
	return firmware.DecodeReadResponse(addr, reg, r)
}

func TestFirmwareBusFrames(t *testing.T) {
	r, _ := newRack(t, exact(sim.Config{Slots: 3, Empty: []int{3}}))
	b := firmwareBus(t, r)
	bmc1, _ := firmware.BMCAddr(1)
	bmc3, _ := firmware.BMCAddr(3)
	on, _ := firmware.EncodeWrite(bmc1, firmware.RegPowerControl, firmware.PowerCmdOn.Encode())
	badPEC := bytes.Clone(on)
	badPEC[len(badPEC)-1] ^= 1
	badValue := []byte{byte(firmware.RegPowerControl), 1, 7, firmware.WritePEC(bmc1, firmware.RegPowerControl, []byte{7})}
	toRMC, _ := firmware.EncodeWrite(firmware.RMCAddr, firmware.RegPowerControl, firmware.PowerCmdOn.Encode())
	tests := []struct {
		name string
		addr uint16
		w, r []byte
		want []error // nil: acknowledged
	}{
		{"write with bad PEC", bmc1, badPEC, nil, []error{firmware.ErrNAK, firmware.ErrPEC}},
		{"write of undefined value", bmc1, badValue, nil, []error{firmware.ErrNAK, firmware.ErrValue}},
		{"write to read-only register", bmc1, []byte{byte(firmware.RegSensors), 8, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, []error{firmware.ErrNAK, firmware.ErrAccess}},
		{"BMC register on the RMC", firmware.RMCAddr, toRMC, nil, []error{firmware.ErrNAK, firmware.ErrUnknownRegister}},
		{"read of unknown register", bmc1, []byte{0x7f}, make([]byte, 4), []error{firmware.ErrNAK, firmware.ErrUnknownRegister}},
		{"read of RMC register on a BMC", bmc1, []byte{byte(firmware.RegPresence)}, make([]byte, 6), []error{firmware.ErrNAK, firmware.ErrUnknownRegister}},
		{"read without command", bmc1, nil, make([]byte, 4), []error{firmware.ErrNAK}},
		{"empty slot", bmc3, firmware.ReadRequest(firmware.RegPowerState), make([]byte, 3), []error{firmware.ErrNAK}},
		{"address beyond the rack", bmc1 + 5, firmware.ReadRequest(firmware.RegPowerState), make([]byte, 3), []error{firmware.ErrNAK}},
		{"nothing there", 0x77, firmware.ReadRequest(firmware.RegPowerState), make([]byte, 3), []error{firmware.ErrNAK}},
		{"good write", bmc1, on, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := b.Tx(tc.addr, tc.w, tc.r)
			if tc.want == nil && err != nil {
				t.Fatalf("Tx: %v", err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Tx: error %v is not %v", err, w)
				}
			}
			want := drivers.PowerOff
			if tc.want == nil {
				want = drivers.PowerOn
			}
			if got := unit(t, r, 1).Power; got != want {
				t.Errorf("power = %s, want %s", got, want)
			}
		})
	}
}

func TestFirmwareBusReads(t *testing.T) {
	r, _ := newRack(t, exact(sim.Config{Slots: 3, Empty: []int{2}, StartOn: true}))
	b := firmwareBus(t, r)
	bmc1, _ := firmware.BMCAddr(1)
	p, err := readReg(b, bmc1, firmware.RegProtocolVersion)
	if v, _ := firmware.DecodeProtocolVersion(p); err != nil || v != firmware.ProtocolVersion {
		t.Errorf("protocol version = %d, %v", v, err)
	}
	p, err = readReg(b, bmc1, firmware.RegSensors)
	s, _ := firmware.DecodeSensors(p)
	truth := unit(t, r, 1)
	if err != nil || s != firmware.SensorsOf(drivers.Readings{Watts: truth.Watts, Celsius: truth.Celsius}) {
		t.Errorf("sensors = %+v, %v; truth %+v", s, err, truth)
	}
	p, err = readReg(b, bmc1, firmware.RegBootStage)
	if st, _ := firmware.DecodeBootStage(p); err != nil || st != firmware.StageReady {
		t.Errorf("stage = %v, %v", st, err)
	}
	p, err = readReg(b, firmware.RMCAddr, firmware.RegPresence)
	if pr, _ := firmware.DecodePresence(p); err != nil || pr != firmware.Presence(0).With(1).With(3) {
		t.Errorf("presence = %b, %v", pr, err)
	}
	p, err = readReg(b, firmware.RMCAddr, firmware.RegRackSensors)
	if rs, _ := firmware.DecodeRackSensors(p); err != nil || rs.Milliwatts != firmware.Milliwatts(r.RackWatts()) {
		t.Errorf("rack sensors = %+v, %v; truth %v W", rs, err, r.RackWatts())
	}
	// A master reading more than the frame gets ones after it.
	long := make([]byte, firmware.ReadLen(firmware.RegPowerState)+2)
	if err := b.Tx(bmc1, firmware.ReadRequest(firmware.RegPowerState), long); err != nil || long[len(long)-1] != 0xff {
		t.Errorf("long read: % x, %v", long, err)
	}
}

func TestFirmwareBusWireFaults(t *testing.T) {
	r, _ := newRack(t, exact(sim.Config{Slots: 2}))
	b := firmwareBus(t, r)
	bmc2, _ := firmware.BMCAddr(2)
	if err := b.InjectWire(bmc2, "gremlins", 1); err == nil {
		t.Error("unknown fault accepted")
	}
	if err := b.InjectWire(bmc2, sim.WireNAK, 0); err == nil {
		t.Error("count 0 accepted")
	}
	tests := []struct {
		fault sim.WireFault
		want  error
	}{
		{sim.WireCorruptPEC, firmware.ErrPEC},
		{sim.WireShortRead, firmware.ErrLength},
		{sim.WireNAK, firmware.ErrNAK},
	}
	for _, tc := range tests {
		t.Run(string(tc.fault), func(t *testing.T) {
			if err := b.InjectWire(bmc2, tc.fault, 2); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if _, err := readReg(b, bmc2, firmware.RegPowerState); !errors.Is(err, tc.want) {
					t.Errorf("read %d: %v, want %v", i, err, tc.want)
				}
			}
			if _, err := readReg(b, bmc2, firmware.RegPowerState); err != nil {
				t.Errorf("after the fault's count: %v", err)
			}
		})
	}
	if got := r.Faults()[sim.FaultWire]; got != 3 {
		t.Errorf("%d wire faults counted, want 3", got)
	}
}
