//go:build !linux

package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SetupSystem prepares a bare initramfs; only on Linux.
func SetupSystem(log *slog.Logger) error {
	return fmt.Errorf("setting up the system: %w: needs linux", errors.ErrUnsupported)
}

// RaiseClock sets the system clock forward to epoch; only on Linux.
func RaiseClock(epoch time.Time) (bool, error) {
	return false, fmt.Errorf("setting the clock: %w: needs linux", errors.ErrUnsupported)
}
