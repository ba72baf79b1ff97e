package store

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd (server and client) logs through zap. Rather than let it write its own
// JSON lines to stderr next to ours, its records are forwarded to the slog
// logger the caller passed in, filtered at a zap level of our choosing: etcd is
// chatty at info and warn (every slow apply, every client retry), which would
// flood `holdfast up`'s terminal.

// newZapLogger returns a zap logger that writes records at or above min to
// log. While quiet (may be nil) is set, records are demoted to debug: etcd
// reports its own listeners closing during a requested shutdown as errors.
func newZapLogger(log *slog.Logger, min zapcore.Level, quiet *atomic.Bool) *zap.Logger {
	return zap.New(&slogCore{h: log.Handler(), min: min, quiet: quiet})
}

type slogCore struct {
	h     slog.Handler
	min   zapcore.Level
	quiet *atomic.Bool
	attrs []slog.Attr // from zap's With, already converted
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *slogCore) level(l zapcore.Level) slog.Level {
	if c.quiet != nil && c.quiet.Load() {
		return slog.LevelDebug
	}
	return slogLevel(l)
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	cp := *c
	cp.attrs = append(append([]slog.Attr(nil), c.attrs...), fieldsToAttrs(fields)...)
	return &cp
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && c.h.Enabled(context.Background(), c.level(e.Level)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, c.level(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(c.attrs...)
	r.AddAttrs(fieldsToAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// fieldsToAttrs lets zap encode each field (it knows its own types) into a
// map, then emits the map in key order so that log lines are stable.
func fieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
