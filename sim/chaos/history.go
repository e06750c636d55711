package chaos

import (
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/racklet/rack/events"
)

// The history of the clients' operations, checked for linearizability
// with porcupine: every node's desired power is a register. A put is
// SetPower(node, v), recorded as the power it leaves desired (a cycle
// leaves "on"); a get is a linearizable Node(node) read of Desired.

// regInput is an operation's input.
type regInput struct {
	Node  string
	Put   bool
	Value string // put: the desired power written
	Asked string // put: what the client asked for (on, off, cycle)
}

// outcome of an operation.
type outcome int

const (
	outOK      outcome = iota // acknowledged
	outRefused                // a definite 4xx refusal: it did not happen
	outUnknown                // timeout, 5xx, connection error: it may have happened
)

type histOp struct {
	client int
	in     regInput
	out    string // get: the Desired read
	call   int64
	ret    int64
	result outcome
}

// ackedEvent is an acknowledged SetPower: its event and sequence.
type ackedEvent struct {
	id, node, value string
	seq             uint64
}

type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []histOp
	acked []ackedEvent
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op histOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) ack(a ackedEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked = append(h.acked, a)
}

func (h *history) ackedEvents() []ackedEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ackedEvent(nil), h.acked...)
}

// desiredOf is the desired power a SetPower leaves in the projection.
func desiredOf(s events.PowerState) string {
	if s == events.PowerCycle {
		return string(events.PowerOn)
	}
	return string(s)
}

// initialDesired is every node's desired power when the rack starts
// (devrack registers every node with desired on).
const initialDesired = "on"

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byNode := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			n := op.Input.(regInput).Node
			if _, ok := byNode[n]; !ok {
				keys = append(keys, n)
			}
			byNode[n] = append(byNode[n], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byNode[k])
		}
		return out
	},
	Init: func() any { return initialDesired },
	Step: func(st, in, out any) (bool, any) {
		i := in.(regInput)
		if i.Put {
			return true, i.Value
		}
		return out.(string) == st.(string), st
	},
	DescribeOperation: func(in, out any) string {
		i := in.(regInput)
		if i.Put {
			if i.Asked != i.Value {
				return fmt.Sprintf("set %s %s (→%s)", i.Node, i.Asked, i.Value)
			}
			return fmt.Sprintf("set %s %s", i.Node, i.Value)
		}
		return fmt.Sprintf("get %s → %v", i.Node, out)
	},
	DescribeState: func(st any) string { return fmt.Sprint(st) },
}

// linResult is the verdict of the linearizability check.
type linResult struct {
	Result        porcupine.CheckResult
	Ops           int // operations checked
	Unknown       int // of which writes with an unknown outcome
	Visualization string
	Err           string
}

// check runs porcupine over the history; refused operations are dropped,
// unknown-outcome writes return at +infinity, failed reads are dropped.
func (h *history) check(timeout time.Duration, visualizeDir string) linResult {
	h.mu.Lock()
	ops := append([]histOp(nil), h.ops...)
	h.mu.Unlock()
	var res linResult
	var hist []porcupine.Operation
	for _, op := range ops {
		switch {
		case op.result == outRefused:
			continue
		case op.result == outUnknown && !op.in.Put:
			continue
		}
		p := porcupine.Operation{ClientId: op.client, Input: op.in, Call: op.call, Return: op.ret}
		if op.in.Put {
			p.Output = ""
		} else {
			p.Output = op.out
		}
		if op.result == outUnknown {
			p.Return = math.MaxInt64 / 2
			res.Unknown++
		}
		hist = append(hist, p)
	}
	res.Ops = len(hist)
	var info porcupine.LinearizationInfo
	res.Result, info = porcupine.CheckOperationsVerbose(registerModel, hist, timeout)
	if res.Result != porcupine.Ok {
		f, err := os.CreateTemp(visualizeDir, "racklet-chaos-linearizability-*.html")
		if err != nil {
			res.Err = err.Error()
			return res
		}
		path := f.Name()
		_ = f.Close()
		if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
			res.Err = err.Error()
			return res
		}
		res.Visualization = path
	}
	return res
}
