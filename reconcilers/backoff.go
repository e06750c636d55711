package reconcilers

import (
	"fmt"
	"math"
	"time"
)

// Backoff is how long the runtime waits before retrying a failed request:
// Base·2^(failures-1), at most Max, varied by ±Jitter (a fraction) so that
// retries of many names spread out. It is counted per name and reset when
// the name reconciles without error. Base is also the shortest
// RequeueAfter the runtime honours.
type Backoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// DefaultBackoff is used when Config.Backoff is zero.
var DefaultBackoff = Backoff{Base: 50 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2}

func (b Backoff) validate() error {
	if b.Base <= 0 {
		return fmt.Errorf("%w: backoff base must be positive", ErrInvalid)
	}
	if b.Max < b.Base {
		return fmt.Errorf("%w: backoff max %s is below base %s", ErrInvalid, b.Max, b.Base)
	}
	if b.Jitter < 0 || b.Jitter >= 1 {
		return fmt.Errorf("%w: backoff jitter must be in [0, 1)", ErrInvalid)
	}
	return nil
}

// delay returns the wait after the given number of consecutive failures
// (>= 1); r in [0, 1) picks the jitter.
func (b Backoff) delay(failures int, r float64) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := float64(b.Max)
	if failures <= 62 {
		d = math.Min(float64(b.Base)*math.Exp2(float64(failures-1)), float64(b.Max))
	}
	d *= 1 + b.Jitter*(2*r-1)
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	return time.Duration(d)
}
