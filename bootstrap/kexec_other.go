//go:build !linux

package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Kexec is the Booter of a real node; kexec exists on Linux only, so here
// it always fails.
type Kexec struct {
	Dir    string
	Logger *slog.Logger
}

var _ Booter = (*Kexec)(nil)

// Boot implements Booter: kexec needs Linux.
func (k *Kexec) Boot(ctx context.Context, img *BootImage) error {
	return fmt.Errorf("kexec: %w: needs linux", errors.ErrUnsupported)
}
