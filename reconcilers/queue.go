package reconcilers

import (
	"sync"
	"time"
)

// queue is a reconciler's work queue of names, after client-go's
// workqueue: a name is queued at most once; a name being processed is not
// handed to another worker, and if it is added meanwhile it is queued again
// when processing is done. Delayed adds (requeue, retry) are timers; the
// start of a name's processing cancels its pending delayed add, so the
// latest Reconcile's result decides when the name runs again.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	dirty      map[string]bool // queued, or to be queued again after processing
	processing map[string]bool
	delayed    map[string]*delayedAdd
	closed     bool
	depth      func(int) // called with the number of queued names, under mu
}

type delayedAdd struct{ timer *time.Timer }

func newQueue(depth func(int)) *queue {
	q := &queue{
		dirty:      map[string]bool{},
		processing: map[string]bool{},
		delayed:    map[string]*delayedAdd{},
		depth:      depth,
	}
	if q.depth == nil {
		q.depth = func(int) {}
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues name unless it is queued already.
func (q *queue) add(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(name)
}

func (q *queue) addLocked(name string) {
	if q.closed || q.dirty[name] {
		return
	}
	q.dirty[name] = true
	if q.processing[name] {
		return
	}
	q.items = append(q.items, name)
	q.depth(len(q.items))
	q.cond.Signal()
}

// addAfter queues name after d, replacing any pending delayed add of it.
func (q *queue) addAfter(name string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.cancelDelayedLocked(name)
	da := &delayedAdd{}
	q.delayed[name] = da
	da.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.delayed[name] != da {
			return // cancelled or replaced
		}
		delete(q.delayed, name)
		q.addLocked(name)
	})
}

func (q *queue) cancelDelayedLocked(name string) {
	if da, ok := q.delayed[name]; ok {
		da.timer.Stop()
		delete(q.delayed, name)
	}
}

// get waits for a queued name and marks it processing; ok is false once
// the queue is closed. The caller must call done(name) afterwards.
func (q *queue) get() (name string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	name = q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	q.depth(len(q.items))
	delete(q.dirty, name)
	q.processing[name] = true
	q.cancelDelayedLocked(name)
	return name, true
}

// done ends the processing of name, queueing it again if it was added
// meanwhile.
func (q *queue) done(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, name)
	if q.dirty[name] && !q.closed {
		q.items = append(q.items, name)
		q.depth(len(q.items))
		q.cond.Signal()
	}
}

// close drops everything queued or delayed and wakes every waiting get.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	for name := range q.delayed {
		q.cancelDelayedLocked(name)
	}
	q.items, q.dirty = nil, map[string]bool{}
	q.depth(0)
	q.cond.Broadcast()
}

// len returns the number of queued names (not processing, not delayed).
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
