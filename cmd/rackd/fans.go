package main

import (
	"fmt"
	"os"

	"github.com/racklet/rack/events"
	"github.com/racklet/rack/reconcilers/fans"
)

// readFanPolicy reads and checks a fan policy file (rackd dev --fan-policy).
func readFanPolicy(path string) (events.FanPolicy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return events.FanPolicy{}, fmt.Errorf("reading the fan policy: %w", err)
	}
	p, err := fans.ParsePolicy(b)
	if err != nil {
		return events.FanPolicy{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
