package pki

import (
	"errors"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnRevocations: every registered function is called once per
// SetRevocations, after the new list is in place; stop unregisters it;
// registering, stopping and swapping lists concurrently is safe (-race).
func TestOnRevocations(t *testing.T) {
	ca := mustCA(t, "rack1", ECDSAP256)
	victim := mustIssue(t, ca, Request{Kind: KindIntegration, Name: "grafana"}, time.Now())
	revoked, _, err := ca.Revoke(nil, []*big.Int{victim.Cert.SerialNumber}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust(ca.Cert, "rack1", nil)

	var a, b atomic.Int32
	var sawRevoked atomic.Bool
	stopA := trust.OnRevocations(func() {
		a.Add(1)
		// The new list is already in place when the hook runs.
		_, err := trust.Peer(victim.Cert)
		sawRevoked.Store(errors.Is(err, ErrPeer))
	})
	stopB := trust.OnRevocations(func() { b.Add(1) })

	trust.SetRevocations(revoked)
	if a.Load() != 1 || b.Load() != 1 {
		t.Fatalf("after one SetRevocations: hooks called %d and %d times, want 1 and 1", a.Load(), b.Load())
	}
	if !sawRevoked.Load() {
		t.Fatal("the hook ran before the new revocation list was in place")
	}

	stopA()
	stopA() // twice is harmless
	trust.SetRevocations(nil)
	if a.Load() != 1 || b.Load() != 2 {
		t.Fatalf("after stopping the first hook: called %d and %d times, want 1 and 2", a.Load(), b.Load())
	}
	stopB()
	trust.SetRevocations(revoked)
	if a.Load() != 1 || b.Load() != 2 {
		t.Fatalf("after stopping both hooks: called %d and %d times, want 1 and 2", a.Load(), b.Load())
	}

	// Concurrent use.
	var wg sync.WaitGroup
	var calls atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				stop := trust.OnRevocations(func() { calls.Add(1) })
				trust.SetRevocations(revoked)
				stop()
			}
		}()
	}
	wg.Wait()
	if calls.Load() < 8*50 {
		t.Fatalf("%d hook calls, want at least %d (each goroutine's own hook sees its own SetRevocations)", calls.Load(), 8*50)
	}
}
