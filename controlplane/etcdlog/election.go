package etcdlog

import (
	"context"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// leadership is a won election: the election key this Log created and its
// create revision. A fenced append compares both.
type leadership struct {
	key string
	rev int64
}

// election campaigns for the rack's leadership on a lease (session) and
// keeps the current leadership and its subscribers.
type election struct {
	l *Log
	// cli is the Log's client with a context of the Log's own (see
	// newElection).
	cli *clientv3.Client

	mu      sync.Mutex
	cur     *leadership
	session *concurrency.Session
	done    bool // resigned: campaign no more
	subs    []chan bool
}

// newElection prepares the campaign of l. concurrency.Election cleans a
// cancelled campaign up on its client's context (Client.Ctx); were that
// the shared client's, a Log closed while etcd has no quorum would wait
// for that clean-up until the client closed, which its owner does only
// after Close. So the election gets a view of the client (the same
// connection, lease and watch streams) whose context ends with the Log's.
// It is never closed itself: closing would close the shared lessor and
// watcher.
func newElection(l *Log) *election {
	cli := clientv3.NewCtxClient(l.ctx)
	cli.KV, cli.Lease, cli.Watcher = l.cli.KV, l.cli.Lease, l.cli.Watcher
	return &election{l: l, cli: cli}
}

// run campaigns until the log closes: wins, holds the leadership while the
// session's lease lives, and campaigns again on a new session when it is
// lost.
func (e *election) run(ctx context.Context) {
	defer e.l.wg.Done()
	pfx := e.l.root + "leader/"
	for attempt := 0; ctx.Err() == nil; {
		s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(e.l.cfg.ElectionTTL), concurrency.WithContext(ctx))
		if err != nil {
			attempt++
			e.l.log.Debug("election: creating a session", "error", err)
			sleep(ctx, backoff(attempt+5))
			continue
		}
		e.mu.Lock()
		if e.done {
			e.mu.Unlock()
			_ = s.Close()
			return
		}
		e.session = s
		e.mu.Unlock()

		el := concurrency.NewElection(s, pfx)
		if err := el.Campaign(ctx, e.l.cfg.Member); err != nil {
			attempt++
			e.l.log.Debug("election: campaign", "error", err)
			s.Orphan()
			sleep(ctx, backoff(attempt+5))
			continue
		}
		attempt = 0
		won := &leadership{key: el.Key(), rev: el.Rev()}
		e.set(won)
		e.l.log.Info("leadership won", "key", won.key, "revision", won.rev)
		e.hold(ctx, s, won)
		e.lost(won)
		e.l.log.Info("leadership ended", "key", won.key)
	}
}

// hold returns when the leadership won ends: the session's lease is lost,
// the election key is deleted (by an operator, or a lease revoked from
// elsewhere) or the log closes.
func (e *election) hold(ctx context.Context, s *concurrency.Session, won *leadership) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := e.cli.Watch(wctx, won.key, clientv3.WithRev(won.rev))
	for {
		select {
		case <-s.Done():
			return
		case <-ctx.Done():
			return
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				return // cannot tell any more: campaign again
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return
				}
			}
		}
	}
}

// set records the current leadership (nil: none) and tells subscribers.
func (e *election) set(v *leadership) {
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.cur != nil
	e.cur = v
	if now := v != nil; now != was {
		for _, ch := range e.subs {
			select { // keep only the latest value
			case <-ch:
			default:
			}
			ch <- now
		}
	}
}

// lost drops the leadership won if it is still the current one: the lease
// expired or a fenced append found the key gone. The session is abandoned
// so that run campaigns afresh.
func (e *election) lost(won *leadership) {
	e.mu.Lock()
	s, cur := e.session, e.cur
	e.mu.Unlock()
	if cur != won {
		return
	}
	e.set(nil)
	if s != nil {
		s.Orphan()
	}
}

// resign gives the leadership up for Close: revoking the lease deletes the
// election key, so the next candidate takes over at once. Without revoke
// (Kill) the lease is only no longer renewed: it expires after its TTL.
func (e *election) resign(revoke bool) {
	e.mu.Lock()
	e.done = true
	s := e.session
	e.mu.Unlock()
	e.set(nil)
	switch {
	case s == nil:
	case revoke:
		_ = s.Close()
	default:
		s.Orphan()
	}
}

func (e *election) closeSubs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ch := range e.subs {
		close(ch)
	}
	e.subs = nil
}

// leader returns this Log's current leadership, or nil.
func (l *Log) leader() *leadership {
	if l.elec == nil {
		return nil
	}
	l.elec.mu.Lock()
	defer l.elec.mu.Unlock()
	return l.elec.cur
}

// IsLeader reports whether this Log holds the rack's leadership
// (Config.Elect) as far as it knows; AppendFenced checks it in etcd.
func (l *Log) IsLeader() bool { return l.leader() != nil }

// LeaderCh returns a channel that receives true when this Log wins the
// leadership and false when it loses it, starting with the current value.
// Only the latest value is kept for a slow reader; the channel is closed
// when the log closes. Without Config.Elect it delivers false once and
// nothing more. (reconcilers.Leadership)
func (l *Log) LeaderCh() <-chan bool {
	ch := make(chan bool, 1)
	if l.elec == nil {
		ch <- false
		return ch // never leads
	}
	e := l.elec
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.closed.Load() {
		close(ch)
		return ch
	}
	ch <- e.cur != nil
	e.subs = append(e.subs, ch)
	return ch
}

// Leader returns the name of the member (Config.Member) that holds the
// rack's leadership, by a linearizable read of the election; "" if none
// does.
func (l *Log) Leader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.cli.Get(ctx, l.root+"leader/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("etcdlog: reading the leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
