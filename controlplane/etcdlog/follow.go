package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/racklet/rack/events"
)

// pageSize is how many keys one Get of a catch-up reads.
const pageSize = 512

// catchUp applies the event keys after the projection's last sequence, as
// of one revision of etcd (read in pages at that revision), and returns
// that revision: the watch continues from the next one. Keys are never
// deleted, so this also recovers from a compacted watch.
func (l *Log) catchUp(ctx context.Context) (int64, error) {
	from := l.EventKey(l.store.LastSequence() + 1)
	end := clientv3.GetPrefixRangeEnd(l.eventsPfx)
	var (
		atRev int64 // the revision every page is read at
		group []*mvccpb.KeyValue
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if atRev != 0 {
			opts = append(opts, clientv3.WithRev(atRev))
		}
		tctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
		resp, err := l.cli.Get(tctx, from, opts...)
		cancel()
		if err != nil {
			return 0, err
		}
		if atRev == 0 {
			atRev = resp.Header.Revision
		}
		// A transaction's keys are contiguous in key order, and all of
		// them are there at one revision: group by revision, and apply
		// the last group once the pages end.
		for _, kv := range resp.Kvs {
			if len(group) > 0 && group[0].ModRevision != kv.ModRevision {
				if err := l.applyGroup(group, group[0].ModRevision); err != nil {
					return 0, err
				}
				group = nil
			}
			group = append(group, kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if len(group) > 0 {
		if err := l.applyGroup(group, group[0].ModRevision); err != nil {
			return 0, err
		}
	}
	return atRev, nil
}

// follow keeps the projection up to date from a watch of the rack's keys
// from revision rev+1 until the log closes. A broken or compacted watch is
// replaced after a catch-up.
func (l *Log) follow(rev int64) {
	defer l.wg.Done()
	for attempt := 0; ; {
		err := l.watch(rev)
		if l.ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrCorrupt) {
			l.setBroken(err)
			return
		}
		attempt++
		l.log.Info("etcd watch ended, catching up", "revision", rev, "error", err)
		if !sleep(l.ctx, backoff(attempt+3)) {
			return
		}
		r, err := l.catchUp(l.ctx)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				l.setBroken(err)
				return
			}
			l.log.Warn("catching up with etcd", "error", err)
			continue
		}
		rev, attempt = r, 0
	}
}

// watch applies the rack's transactions from revision from+1 until the
// watch fails.
func (l *Log) watch(from int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(l.ctx))
	defer cancel()
	wch := l.cli.Watch(ctx, l.root, clientv3.WithPrefix(), clientv3.WithRev(from+1))
	var group []*mvccpb.KeyValue
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			kv := ev.Kv
			key := string(kv.Key)
			isEvent, isHead := strings.HasPrefix(key, l.eventsPfx), key == l.headKey
			if !isEvent && !isHead {
				continue // the election, or keys of a future version
			}
			if kv.ModRevision <= l.appliedRev() {
				continue // applied by a catch-up already
			}
			if ev.Type != clientv3.EventTypePut {
				return fmt.Errorf("%w: key %s deleted at revision %d", ErrCorrupt, key, kv.ModRevision)
			}
			if len(group) > 0 && group[0].ModRevision != kv.ModRevision {
				return fmt.Errorf("%w: revision %d wrote events without the head", ErrCorrupt, group[0].ModRevision)
			}
			if isEvent {
				group = append(group, kv)
				continue
			}
			// The head is the transaction's last put: the batch is whole.
			if err := l.applyGroup(group, kv.ModRevision); err != nil {
				return err
			}
			if want := strconv.FormatUint(l.store.LastSequence(), 10); string(kv.Value) != want {
				return fmt.Errorf("%w: head at revision %d is %q, the events end at %s", ErrCorrupt, kv.ModRevision, kv.Value, want)
			}
			group = nil
		}
	}
	if err := l.ctx.Err(); err != nil {
		return err
	}
	return errors.New("etcdlog: watch channel closed")
}

// appliedRev returns the head revision the projection has applied.
func (l *Log) appliedRev() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// applyGroup applies the event keys one transaction wrote at revision rev
// as one batch, checking that they continue the log.
func (l *Log) applyGroup(kvs []*mvccpb.KeyValue, rev int64) error {
	evs := make([]events.Event, len(kvs))
	next := l.store.LastSequence() + 1
	for i, kv := range kvs {
		want := l.EventKey(next + uint64(i))
		if string(kv.Key) != want {
			return fmt.Errorf("%w: revision %d wrote %s, want %s", ErrCorrupt, rev, kv.Key, want)
		}
		ev, err := events.Decode(kv.Value)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, kv.Key, err)
		}
		if ev.Sequence != next+uint64(i) {
			return fmt.Errorf("%w: %s holds sequence %d", ErrCorrupt, kv.Key, ev.Sequence)
		}
		evs[i] = ev
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(evs) > 0 {
		if _, err := l.store.Apply(evs); err != nil {
			return fmt.Errorf("%w: revision %d does not fit the state: %w", ErrCorrupt, rev, err)
		}
	}
	if rev > l.rev {
		l.rev = rev
		close(l.revCh)
		l.revCh = make(chan struct{})
	}
	return nil
}

// setBroken makes the log refuse appends and syncs with err.
func (l *Log) setBroken(err error) {
	l.log.Error("event log corrupted; appends stop", "error", err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken == nil {
		l.broken = err
		close(l.revCh)
		l.revCh = make(chan struct{})
	}
}
