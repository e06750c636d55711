package power

import (
	"testing"
	"time"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

func TestBudgetModel(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const window = 50 * time.Millisecond
	type rec struct {
		node    string
		ago     time.Duration // when its power-on returned, before now
		pending bool
	}
	for _, tt := range []struct {
		name     string
		budget   float64
		observed map[string]events.PowerState // the state's observed power
		records  []rec
		admit    bool
		wait     time.Duration // when not admitted
	}{
		{"unlimited", 0, map[string]events.PowerState{"a": "on", "b": "on", "c": "on"}, []rec{{node: "a", pending: true}}, true, 0},
		{"empty rack", 9, nil, nil, true, 0},
		{"budget below one inrush", 8.9, nil, nil, false, time.Second},
		{"steady units", 26, map[string]events.PowerState{"a": "on", "b": "on", "c": "on", "d": "on"}, nil, true, 0}, // 16.8 + 9
		{"steady units, no room", 25, map[string]events.PowerState{"a": "on", "b": "on", "c": "on", "d": "on"}, nil, false, time.Second},
		{"off units do not count", 9, map[string]events.PowerState{"a": "off", "b": "off"}, nil, true, 0},
		{"one inrush", 18, nil, []rec{{node: "a", ago: 10 * time.Millisecond}}, true, 0},                                                    // 9 + 9
		{"two inrushes", 26, nil, []rec{{node: "a", ago: 10 * time.Millisecond}, {node: "b", pending: true}}, false, 40 * time.Millisecond}, // 27
		{"in flight counts as inrush", 26, nil, []rec{{node: "a", pending: true}, {node: "b", pending: true}}, false, window},
		{"window over", 26, nil, []rec{{node: "a", ago: window}, {node: "b", ago: 30 * time.Millisecond}}, true, 0}, // 4.2 + 9 + 9
		{"record and state count once", 22.2, map[string]events.PowerState{"a": "on"}, []rec{{node: "a", ago: 10 * time.Millisecond}}, true, 0},
		{"own unit is not counted", 9, map[string]events.PowerState{"x": "on"}, []rec{{node: "x", ago: time.Millisecond}}, true, 0},
		{"removed node is not counted", 9, nil, []rec{{node: "gone", pending: true}}, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(Config{BudgetWatts: tt.budget, UnitWatts: 4.2, InrushWatts: 9, InrushWindow: window, ObserveInterval: time.Second})
			st := state.New()
			for _, n := range []string{"a", "b", "c", "d", "x"} {
				st.Nodes[n] = &state.Node{Name: n, Observed: tt.observed[n]}
			}
			for _, r := range tt.records {
				b.powered[r.node] = poweredOn{pending: r.pending, at: t0.Add(-r.ago)}
			}
			ok, wait := b.admit(st, "x", t0)
			if ok != tt.admit || (!ok && wait != tt.wait) {
				t.Fatalf("admit = %v, wait %s; want %v, wait %s", ok, wait, tt.admit, tt.wait)
			}
			if ok && !b.powered["x"].pending {
				t.Errorf("admitted without reserving")
			}
		})
	}
}

func TestBudgetRecords(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBudget(Config{BudgetWatts: 18, UnitWatts: 4.2, InrushWatts: 9, InrushWindow: 50 * time.Millisecond, ObserveInterval: time.Second})
	st := state.New()
	for _, n := range []string{"a", "b", "c"} {
		st.Nodes[n] = &state.Node{Name: n}
	}
	mustAdmit := func(node string, now time.Time, want bool) {
		t.Helper()
		if ok, _ := b.admit(st, node, now); ok != want {
			t.Fatalf("admit %s at %s = %v, want %v", node, now.Sub(t0), ok, want)
		}
	}
	mustAdmit("a", t0, true)
	mustAdmit("b", t0, true)
	mustAdmit("c", t0, false)
	b.cancel("b") // not attempted after all
	mustAdmit("c", t0, true)
	b.poweredOn("a", t0)
	b.poweredOn("c", t0)
	mustAdmit("b", t0.Add(10*time.Millisecond), false) // 2 inrushes: 18 + 9
	mustAdmit("b", t0.Add(50*time.Millisecond), true)  // 2 units on: 8.4 + 9
	b.cancel("b")
	b.observed("a", events.PowerOff, t0.Add(50*time.Millisecond)) // off: no record
	b.observed("c", events.PowerOn, t0.Add(60*time.Millisecond))  // on past its window: the state has it
	if len(b.powered) != 0 {
		t.Errorf("records left: %v", b.powered)
	}
}
