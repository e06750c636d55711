package pki

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"time"
)

// DefaultCRLCheckInterval is how often a member looks at its CRL file.
const DefaultCRLCheckInterval = 10 * time.Second

// WatchRevocations reloads the revocation list at path into t whenever the
// file's content changes, until ctx ends. A list that does not load (bad
// signature, expired, unreadable) is logged and the previous one stays:
// a broken file must not silently let revoked certificates back in, nor
// lock everyone out.
func WatchRevocations(ctx context.Context, path string, t *Trust, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = DefaultCRLCheckInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	last, _ := os.ReadFile(path)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			log.Warn("cannot read the revocation list; keeping the previous one", "path", path, "err", err)
			continue
		}
		if bytes.Equal(data, last) {
			continue
		}
		rev, err := ParseRevocations(data, t.CA, time.Now())
		if err != nil {
			log.Error("revocation list refused; keeping the previous one", "path", path, "err", err)
			last = data
			continue
		}
		t.SetRevocations(rev)
		last = data
		log.Info("revocation list reloaded", "path", path, "revoked", rev.Len())
	}
}
