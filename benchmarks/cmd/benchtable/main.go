// Command benchtable merges the records a `make bench` run wrote (JSON
// lines in -in, the benchmarks' RACKLET_BENCH_OUT) into one report, writes
// it as JSON (-out, benchmarks/results/latest.json) and prints it as one
// table. The logic is in benchmarks/results.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/racklet/rack/benchmarks/results"
)

func main() {
	in := flag.String("in", os.Getenv(results.EnvDir), "directory of the records (*.jsonl)")
	out := flag.String("out", filepath.Join("benchmarks", "results", "latest.json"), "where to write the report")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" {
		return errors.New("no records directory: give -in or set " + results.EnvDir)
	}
	recs, err := results.Load(in)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("no records in %s", in)
	}
	rep := results.Build(recs, results.ReadMachine(), time.Now())
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s\n", out)
	return nil
}
