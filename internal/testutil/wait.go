// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"testing"
	"time"
)

// WaitFor calls f until it returns nil, and fails the test with f's last
// error if that has not happened within timeout. It polls every few
// milliseconds at first, then every 50 ms. Use it instead of sleeping:
// the condition says what is awaited, and the error says what is missing.
func WaitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
