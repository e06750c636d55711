package drivers

import "context"

// BootSource is where a compute unit boots from at its next power-on or
// reset. The values match events.BootSource.
type BootSource string

const (
	// BootNetwork: the verified network boot environment.
	BootNetwork BootSource = "network"
	// BootLocal: the OS on the unit's own storage.
	BootLocal BootSource = "local"
)

// Valid reports whether s is network or local.
func (s BootSource) Valid() bool { return s == BootNetwork || s == BootLocal }

// StageImageVerified is the boot stage between bootstrap and OS in a
// network boot: the boot environment has checked the OS image's signed
// manifest and digest and is about to start it. A BMC that knows only the
// firmware register map's stages (off, firmware, bootstrap, os, ready)
// never reports it; the node reports it to the control plane itself.
const StageImageVerified BootStage = "image-verified"

// BootSourceSetter is an optional BMC capability: it sets and reads the
// unit's next boot source. It takes effect at the unit's next power-on or
// power cycle.
type BootSourceSetter interface {
	// SetBootSource sets the next boot source; anything but network or
	// local is refused (ErrRefused). It is idempotent.
	SetBootSource(ctx context.Context, s BootSource) error
	// BootSource reads the next boot source.
	BootSource(ctx context.Context) (BootSource, error)
}

// Operation names of the boot source calls, carried by *Error.
const (
	OpBootSourceSet  = "boot.source.set"
	OpBootSourceRead = "boot.source.read"
)
