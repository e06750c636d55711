package reconcilers

import (
	"testing"
	"time"
)

func TestQueueCoalesces(t *testing.T) {
	q := newQueue(nil)
	for range 5 {
		q.add("a")
	}
	q.add("b")
	if got := q.len(); got != 2 {
		t.Fatalf("queued %d names, want 2", got)
	}
	name, ok := q.get()
	if !ok || name != "a" {
		t.Fatalf("get = %q, %v; want a, true", name, ok)
	}
	// a changes again and again while being processed: not handed out
	// concurrently, queued once more when done.
	for range 5 {
		q.add("a")
	}
	if got := q.len(); got != 1 {
		t.Fatalf("while a is processing, queued %d names, want 1 (b)", got)
	}
	q.done("a")
	var order []string
	for q.len() > 0 {
		n, _ := q.get()
		order = append(order, n)
		q.done(n)
	}
	if len(order) != 2 || order[0] != "b" || order[1] != "a" {
		t.Fatalf("order %v, want [b a]", order)
	}
}

func TestQueueGetCancelsDelayed(t *testing.T) {
	q := newQueue(nil)
	defer q.close()
	q.addAfter("a", time.Hour)
	q.add("a")
	if _, ok := q.get(); !ok {
		t.Fatal("get failed")
	}
	q.mu.Lock()
	pending := len(q.delayed)
	q.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d delayed adds pending after get, want 0", pending)
	}
	q.done("a")
}

func TestQueueAddAfter(t *testing.T) {
	q := newQueue(nil)
	defer q.close()
	q.addAfter("a", time.Millisecond)
	name, ok := q.get() // blocks until the timer fires
	if !ok || name != "a" {
		t.Fatalf("get = %q, %v; want a, true", name, ok)
	}
	q.done("a")
}

func TestQueueCloseWakesGet(t *testing.T) {
	q := newQueue(nil)
	q.addAfter("a", time.Hour)
	done := make(chan bool)
	go func() {
		_, ok := q.get()
		done <- ok
	}()
	q.close()
	if ok := <-done; ok {
		t.Fatal("get returned a name after close")
	}
	q.add("b")
	if got := q.len(); got != 0 {
		t.Fatalf("closed queue holds %d names", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 50 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2}
	tests := []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{1, 0.5, 50 * time.Millisecond},
		{2, 0.5, 100 * time.Millisecond},
		{3, 0.5, 200 * time.Millisecond},
		{1, 0, 40 * time.Millisecond},
		{1, 1, 60 * time.Millisecond},
		{0, 0.5, 50 * time.Millisecond},
		{11, 0.5, 30 * time.Second}, // 51.2s capped
		{11, 0, 24 * time.Second},
		{11, 1, 30 * time.Second}, // jitter never exceeds the cap
		{1000, 0.5, 30 * time.Second},
	}
	for _, tt := range tests {
		if got := b.delay(tt.failures, tt.r); got != tt.want {
			t.Errorf("delay(%d, %v) = %s, want %s", tt.failures, tt.r, got, tt.want)
		}
	}
	// With the worst jitter, the delay still grows until the cap.
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		lo, hi := b.delay(n, 0), b.delay(n, 1)
		if lo <= prev {
			t.Errorf("delay(%d) lowest %s not above delay(%d) highest %s", n, lo, n-1, prev)
		}
		prev = hi
	}
}
