package testutil

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	omMetaRE   = regexp.MustCompile(`^# (TYPE|HELP|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$`)
	omSampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*)?\})? (\S+)(?: (\S+))?$`)
	omSuffixes = map[string][]string{
		"counter":        {"_total", "_created"},
		"gauge":          {""},
		"histogram":      {"_bucket", "_count", "_sum", "_created"},
		"gaugehistogram": {"_bucket", "_gcount", "_gsum"},
		"summary":        {"", "_count", "_sum", "_created"},
		"info":           {"_info"},
		"stateset":       {""},
		"unknown":        {""},
	}
)

// CheckOpenMetrics checks an OpenMetrics 1.0 text exposition for what a
// scraper relies on: metadata lines well formed, each family's TYPE before
// its samples, families not interleaved, sample names that fit their
// family's type (counters end in _total), label sets and values that
// parse, counters not negative, and "# EOF" as the last line. It returns
// the first problem, naming the line. (prometheus/common's expfmt writes
// OpenMetrics but does not parse it.)
func CheckOpenMetrics(body string) error {
	if !strings.HasSuffix(body, "# EOF\n") {
		return fmt.Errorf("openmetrics: the exposition does not end with \"# EOF\\n\"")
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	types := map[string]string{}
	done := map[string]bool{} // families whose samples have ended
	current := ""
	for i, line := range lines[:len(lines)-1] {
		n := i + 1
		if m := omMetaRE.FindStringSubmatch(line); m != nil {
			fam := m[2]
			if fam != current {
				if done[fam] {
					return fmt.Errorf("openmetrics: line %d: family %s appears twice (interleaved)", n, fam)
				}
				if current != "" {
					done[current] = true
				}
				current = fam
			}
			if m[1] == "TYPE" {
				if _, ok := omSuffixes[m[3]]; !ok {
					return fmt.Errorf("openmetrics: line %d: unknown type %q", n, m[3])
				}
				if m[3] == "counter" && strings.HasSuffix(fam, "_total") {
					return fmt.Errorf("openmetrics: line %d: counter family %s must be named without _total", n, fam)
				}
				types[fam] = m[3]
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			return fmt.Errorf("openmetrics: line %d: malformed comment %q", n, line)
		}
		m := omSampleRE.FindStringSubmatch(line)
		if m == nil {
			return fmt.Errorf("openmetrics: line %d: malformed sample %q", n, line)
		}
		name, value := m[1], m[3]
		typ, ok := types[current]
		if !ok {
			return fmt.Errorf("openmetrics: line %d: sample %s before any TYPE of its family", n, name)
		}
		suffix, fits := strings.CutPrefix(name, current)
		if !fits || !contains(omSuffixes[typ], suffix) {
			return fmt.Errorf("openmetrics: line %d: sample %s does not belong to %s family %s", n, name, typ, current)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("openmetrics: line %d: value %q: %v", n, value, err)
		}
		if typ == "counter" && suffix == "_total" && v < 0 {
			return fmt.Errorf("openmetrics: line %d: counter %s is negative", n, name)
		}
		if ts := m[4]; ts != "" {
			if _, err := strconv.ParseFloat(ts, 64); err != nil {
				return fmt.Errorf("openmetrics: line %d: timestamp %q: %v", n, ts, err)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
