package results

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	CPU         string  `json:"cpu"`
	Cores       int     `json:"cores"`
	MemTotalMiB float64 `json:"memTotalMiB,omitempty"`
	Go          string  `json:"go"`
	OS          string  `json:"os"`
	Arch        string  `json:"arch"`
	Kernel      string  `json:"kernel,omitempty"`
	// Load1 is the 1-minute load average when the report was made.
	Load1 float64 `json:"load1,omitempty"`
}

// ReadMachine describes this machine (Linux's /proc where it helps).
func ReadMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Load1: Load1()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, ok := procField(string(b), "MemTotal"); ok {
			m.MemTotalMiB = kb / 1024
		}
	}
	return m
}

// cpuModel finds the CPU's name in /proc/cpuinfo: "model name" on x86,
// "Model" or "Hardware" on ARM boards (a Raspberry Pi has the latter).
func cpuModel(cpuinfo string) string {
	for _, key := range []string{"model name", "Model", "Hardware", "cpu model"} {
		sc := bufio.NewScanner(strings.NewReader(cpuinfo))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// procField reads "Name: <n> kB" style fields of /proc files (status,
// meminfo); the number as given.
func procField(text, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseFloat(f[0], 64)
		return n, err == nil
	}
	return 0, false
}

// ProcStatusMiB reads a "Name: <n> kB" field of /proc/<pid>/status (VmRSS,
// VmHWM) in MiB.
func ProcStatusMiB(status, name string) (float64, bool) {
	kb, ok := procField(status, name)
	return kb / 1024, ok
}

// Names of the floor benchmarks: their p50s are what the other figures are
// divided by.
const (
	FloorFsync = "BenchmarkBaselineFsync"
	FloorRTT   = "BenchmarkBaselineHTTPRoundTrip"
)

// Floor is what this machine gives at best: the p50 of a 4 KiB write and
// fsync on the data disk, and of a loopback HTTP round trip.
type Floor struct {
	FsyncP50Ms float64 `json:"fsyncP50Ms,omitempty"`
	RTTP50Ms   float64 `json:"rttP50Ms,omitempty"`
}

// Result is a record with its p50 as multiples of the floor.
type Result struct {
	Record
	// P50PerFsync and P50PerRTT: the p50 over the floor's p50s.
	P50PerFsync float64 `json:"p50PerFsync,omitempty"`
	P50PerRTT   float64 `json:"p50PerRtt,omitempty"`
}

// Report is latest.json.
type Report struct {
	Generated time.Time `json:"generated"`
	Machine   Machine   `json:"machine"`
	Floor     Floor     `json:"floor"`
	Results   []Result  `json:"results"`
	Targets   []Verdict `json:"targets"`
	// Missing lists targets whose benchmarks did not run.
	Missing []string `json:"missing,omitempty"`
}

// Build merges the records (see Merge) into a report.
func Build(recs []Record, m Machine, now time.Time) Report {
	merged := Merge(recs)
	rep := Report{Generated: now.UTC(), Machine: m}
	for _, r := range merged {
		p50, ok := r.Metric(P50)
		if !ok || p50.Unit != UnitMs {
			continue
		}
		switch r.Name {
		case FloorFsync:
			rep.Floor.FsyncP50Ms = p50.Value
		case FloorRTT:
			rep.Floor.RTTP50Ms = p50.Value
		}
	}
	for _, r := range merged {
		res := Result{Record: r}
		if p50, ok := r.Metric(P50); ok && p50.Unit == UnitMs {
			if rep.Floor.FsyncP50Ms > 0 {
				res.P50PerFsync = p50.Value / rep.Floor.FsyncP50Ms
			}
			if rep.Floor.RTTP50Ms > 0 {
				res.P50PerRTT = p50.Value / rep.Floor.RTTP50Ms
			}
		}
		rep.Results = append(rep.Results, res)
	}
	for _, t := range Targets {
		v, ok := t.Judge(merged)
		if !ok {
			rep.Missing = append(rep.Missing, t.Name)
			continue
		}
		rep.Targets = append(rep.Targets, v)
	}
	return rep
}

// WriteTable prints the report as one table, then the floor, the machine
// and the targets.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// "other" ends each line without a tab: free text, not a column.
	fmt.Fprintln(tw, "benchmark\tn\tp50 ms\tp90 ms\tp99 ms\tmax ms\trate\t×fsync\tload\t  other")
	for _, r := range rep.Results {
		cell := func(name string) string {
			m, ok := r.Metric(name)
			if !ok || m.Unit != UnitMs {
				return "–"
			}
			return formatValue(m.Value)
		}
		rate := "–"
		if m, ok := r.Metric(Rate); ok {
			rate = formatValue(m.Value) + " " + m.Unit
		}
		ratio := "–"
		if r.P50PerFsync > 0 {
			ratio = formatValue(r.P50PerFsync)
		}
		var other []string
		for _, m := range r.Metrics {
			switch m.Name {
			case P50, P90, P99, Max, Rate:
				continue
			}
			other = append(other, m.Name+" "+formatValue(m.Value)+" "+m.Unit)
		}
		extra := ""
		if len(other) > 0 {
			extra = "  " + strings.Join(other, ", ")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\n",
			strings.TrimPrefix(r.Name, "Benchmark"), r.Samples, cell(P50), cell(P90), cell(P99), cell(Max),
			rate, ratio, r.Load1, extra)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	m := rep.Machine
	fmt.Fprintf(w, "\nfloor: fsync p50 %s ms, loopback HTTP round trip p50 %s ms (×fsync: p50 over the fsync p50)\n",
		formatValue(rep.Floor.FsyncP50Ms), formatValue(rep.Floor.RTTP50Ms))
	fmt.Fprintf(w, "machine: %s, %d cores, %s MiB, %s %s/%s, kernel %s, load %.2f at the end\n",
		orUnknown(m.CPU), m.Cores, formatValue(m.MemTotalMiB), m.Go, m.OS, m.Arch, orUnknown(m.Kernel), m.Load1)
	fmt.Fprintln(w, "\ntargets:")
	for _, v := range rep.Targets {
		verdict := "MISSED"
		if v.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "  %-6s %s: %s (%s)\n", verdict, v.Name, v.Measured, v.By)
	}
	for _, n := range rep.Missing {
		fmt.Fprintf(w, "  ?      %s: not measured in this run\n", n)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// formatValue prints a figure with about three significant digits.
func formatValue(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
