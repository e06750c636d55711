package etcdlog

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap logger for an embedded etcd member that passes
// its errors (and the reason of a fatal exit: etcd's fatal log calls
// os.Exit) to l, with the attribute component=etcd. Once quiet is set (the
// member is stopping) only fatal ones pass: a stopping member reports
// closed listeners as errors.
func zapToSlog(l *slog.Logger, quiet *atomic.Bool) *zap.Logger {
	return zap.New(&slogCore{l: l.With("component", "etcd"), quiet: quiet})
}

type slogCore struct {
	l     *slog.Logger
	quiet *atomic.Bool
	attrs []any
}

var _ zapcore.Core = (*slogCore)(nil)

func (c *slogCore) Enabled(lvl zapcore.Level) bool {
	if c.quiet.Load() {
		return lvl >= zapcore.DPanicLevel
	}
	return lvl >= zapcore.ErrorLevel
}

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	n := *c
	n.attrs = append(slices.Clip(c.attrs), attrs(fs)...)
	return &n
}

// benign are etcd errors that are not: "failed to update storage
// version" is logged by every new member until its first snapshot records
// a term.
var benign = map[string]bool{"failed to update storage version": true}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && (e.Level >= zapcore.DPanicLevel || !benign[e.Message]) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	msg := e.Message
	if e.Level >= zapcore.DPanicLevel {
		msg = "etcd stops the process: " + msg
	}
	c.l.Log(context.Background(), slog.LevelError, msg, append(slices.Clip(c.attrs), attrs(fs)...)...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

// attrs turns zap fields into slog key-value pairs, sorted by key.
func attrs(fs []zapcore.Field) []any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		out = append(out, k, enc.Fields[k])
	}
	return out
}
