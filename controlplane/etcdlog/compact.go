package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Compaction of etcd's history.
//
// etcd keeps every revision of every key until it is compacted: here one
// revision of the head per append, besides the event keys themselves. The
// leader (Config.Elect) compacts, every CompactInterval, the revisions
// before the oldest event in the retention window (the last Retention
// sequences). Event keys are never deleted, so compaction loses no event:
// `etcdctl get --prefix` still lists them all, and a watch from a revision
// inside the window still replays the window; a watch from an older
// revision gets "required revision has been compacted". Compaction frees
// space inside etcd's database for reuse; `etcdctl defrag` gives it back to
// the file system.

// compactLoop compacts on the leader every CompactInterval until the log
// closes.
func (l *Log) compactLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if !l.IsLeader() {
			continue
		}
		if rev, err := l.compact(l.ctx); err != nil && l.ctx.Err() == nil {
			l.log.Warn("compacting etcd's history", "err", err)
		} else if rev > 0 {
			l.log.Info("compacted etcd's history", "revision", rev)
		}
	}
}

// compact compacts etcd's history before the revision of the oldest event
// in the retention window and returns that revision; 0 if there was
// nothing (new) to compact.
func (l *Log) compact(ctx context.Context) (int64, error) {
	last := l.store.LastSequence()
	if last <= uint64(l.cfg.Retention) {
		return 0, nil
	}
	oldest := last - uint64(l.cfg.Retention) + 1
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.cli.Get(ctx, l.EventKey(oldest))
	if err != nil {
		return 0, fmt.Errorf("reading event %d: %w", oldest, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%w: event %d is missing", ErrCorrupt, oldest)
	}
	rev := resp.Kvs[0].ModRevision
	if rev <= l.compacted.Load() {
		return 0, nil
	}
	if _, err := l.cli.Compact(ctx, rev); err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			// Compacted at or past rev already (by another leader, an
			// operator or etcd's own auto-compaction).
			l.compacted.Store(rev)
			return 0, nil
		}
		return 0, fmt.Errorf("compacting at revision %d: %w", rev, err)
	}
	l.compacted.Store(rev)
	return rev, nil
}
