package buffer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ensureDeadStream creates the dead-letter stream: one message per key
// (the latest), on a subject named after the key's hash.
func ensureDeadStream(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: cfg.DeadStream, Subjects: []string{cfg.DeadSubject + ".>"},
		Storage: jetstream.FileStorage, Replicas: cfg.Log.Replicas, Duplicates: 2 * time.Minute,
		MaxMsgsPerSubject: 1, AllowDirect: true})
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", cfg.DeadStream, err)
	}
	return nil
}

// DeadWrite is a dead-lettered write.
type DeadWrite struct {
	Write
	// Sequence is its message in the dead-letter stream; DeadAt is when it
	// was dead-lettered.
	Sequence uint64
	DeadAt   time.Time
}

// ErrNotDead is returned for a key with no dead-lettered write.
var ErrNotDead = errors.New("no dead-lettered write with this key")

// Dead lists the dead-lettered writes, oldest first, at most limit (0: all).
func Dead(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, limit int) ([]DeadWrite, error) {
	s, err := js.Stream(ctx, cfg.DeadStream)
	if err != nil {
		return nil, err
	}
	info := s.CachedInfo() // fetched by Stream
	var out []DeadWrite
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq && (limit <= 0 || len(out) < limit); {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(cfg.DeadSubject+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, err
		}
		if ws, err := decodeBatch(m.Data); err == nil && len(ws) == 1 {
			out = append(out, DeadWrite{Write: ws[0], Sequence: m.Sequence, DeadAt: m.Time})
		}
		seq = m.Sequence + 1
	}
	return out, nil
}

// findDead returns the dead-letter message of key.
func findDead(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, key string) (DeadWrite, error) {
	s, err := js.Stream(ctx, cfg.DeadStream)
	if err != nil {
		return DeadWrite{}, err
	}
	m, err := s.GetLastMsgForSubject(ctx, deadSubject(cfg.DeadSubject, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadWrite{}, ErrNotDead
	}
	if err != nil {
		return DeadWrite{}, err
	}
	ws, err := decodeBatch(m.Data)
	if err != nil || len(ws) != 1 {
		return DeadWrite{}, fmt.Errorf("dead-letter message %d: %v", m.Sequence, err)
	}
	if ws[0].Key != key { // a hash collision: 128 bits make it theoretical
		return DeadWrite{}, ErrNotDead
	}
	return DeadWrite{Write: ws[0], Sequence: m.Sequence, DeadAt: m.Time}, nil
}

// FindDead returns the dead-lettered write of key, if any.
func FindDead(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, key string) (Write, bool, error) {
	d, err := findDead(ctx, js, cfg, key)
	if errors.Is(err, ErrNotDead) {
		return Write{}, false, nil
	}
	return d.Write, err == nil, err
}

// Redrive puts the dead-lettered write of key back in the log with a fresh
// allowance of attempts, then removes it from the dead-letter stream. It
// is idempotent: a write redriven twice (or whose removal was lost) is
// applied once, as its key is recorded when it is.
func Redrive(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, key string) (Write, error) {
	d, err := findDead(ctx, js, cfg, key)
	if err != nil {
		return Write{}, err
	}
	w := d.Write
	w.Attempts = 0
	// The message id makes a repeated redrive of this dead letter (within
	// the dedup window) store it once.
	id := fmt.Sprintf("redrive-%d", d.Sequence)
	if _, err := js.Publish(ctx, cfg.Log.Subject, appendBatch(nil, []Write{w}), jetstream.WithMsgID(id)); err != nil {
		return Write{}, fmt.Errorf("re-enqueue %q: %w", key, err)
	}
	if err := deleteDead(ctx, js, cfg, d.Sequence); err != nil {
		return Write{}, fmt.Errorf("re-enqueued %q but could not remove its dead letter (redrive again: it applies once): %w", key, err)
	}
	return w, nil
}

// Drop deletes the dead-lettered write of key: it will never be applied.
func Drop(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, key string) (Write, error) {
	d, err := findDead(ctx, js, cfg, key)
	if err != nil {
		return Write{}, err
	}
	return d.Write, deleteDead(ctx, js, cfg, d.Sequence)
}

func deleteDead(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig, seq uint64) error {
	s, err := js.Stream(ctx, cfg.DeadStream)
	if err != nil {
		return err
	}
	if err = s.DeleteMsg(ctx, seq); err == nil {
		return nil
	}
	if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil // already gone (a concurrent redrive or drop)
	}
	return err
}

// deadCount is the number of dead-lettered writes.
func deadCount(ctx context.Context, js jetstream.JetStream, cfg CommitterConfig) (uint64, error) {
	s, err := js.Stream(ctx, cfg.DeadStream)
	if err != nil {
		return 0, err
	}
	info := s.CachedInfo() // fetched by Stream
	return info.State.Msgs, nil
}
