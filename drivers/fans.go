package drivers

import "context"

// FanReading is one fan's tachometer and the duty its controller drives.
type FanReading struct {
	// Fan is the fan's number, 1-based.
	Fan int `json:"fan"`
	// RPM is the measured speed; 0 for a fan that does not turn.
	RPM float64 `json:"rpm"`
	// DutyPercent is the PWM duty the controller drives the fan with, 0 to
	// 100 (it may differ from the last duty set: a controller's own
	// fail-safe may run the fans at 100%).
	DutyPercent float64 `json:"dutyPercent"`
}

// FanController is an optional RMC capability: the rack's fans. All fans
// share one duty. A rack without fans refuses both calls (ErrRefused).
type FanController interface {
	// Fans reads every fan, in fan order.
	Fans(ctx context.Context) ([]FanReading, error)
	// SetFanDuty sets every fan's duty, in percent; outside 0..100 (or
	// NaN) is refused (ErrRefused).
	SetFanDuty(ctx context.Context, percent float64) error
}

// Operation names of the fan calls, carried by *Error.
const (
	OpFansRead   = "fans.read"
	OpFanDutySet = "fans.duty.set"
)
