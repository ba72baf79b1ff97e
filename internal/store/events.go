package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/wait"
)

// The event log: events/<20-digit unix nanos>-<member>. Zero-padded so that
// key order is time order and a range read of the newest N is one request.
// Events are informational (dashboard, drill reports), so they carry no lease
// and an append that fails never blocks a failover.

// maxEventKeyAttempts bounds the search for a free key when several events
// share a nanosecond (same member, or clocks with coarse resolution).
const maxEventKeyAttempts = 64

// AppendEvent adds e to the log. Time is set to now when zero. The key is
// unique even for events of the same member in the same nanosecond: a taken
// key moves the key (not e.Time) one nanosecond on.
func (s *Store) AppendEvent(ctx context.Context, e cluster.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Revision = 0 // filled from the key's create revision when read
	val, err := encode("event", e)
	if err != nil {
		return err
	}
	who := strings.Map(func(r rune) rune {
		if r == '/' || r < ' ' {
			return '_'
		}
		return r
	}, e.Member)
	nanos := e.Time.UnixNano()
	for attempt := 0; attempt < maxEventKeyAttempts; attempt++ {
		key := fmt.Sprintf("%s%020d-%s", s.eventsPrefix(), nanos+int64(attempt), who)
		cctx, cancel, err := s.call(ctx)
		if err != nil {
			return err
		}
		resp, err := s.cli.Txn(cctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val)).
			Commit()
		err = wrapErr(cctx, "append event "+e.Kind, err)
		cancel()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			if n := s.appends.Add(1); (n-1)%s.trimEvery() == 0 {
				s.trimEvents(ctx)
			}
			return nil
		}
	}
	return fmt.Errorf("store: append event %s: no free key after %d attempts", e.Kind, maxEventKeyAttempts)
}

// trimEvery paces trimming: counting the log costs a request, so it is done
// every tenth of MaxEvents appends (at most every 100), which keeps the log
// within MaxEvents plus a small margin.
func (s *Store) trimEvery() uint64 {
	return uint64(min(100, max(1, s.cfg.MaxEvents/10)))
}

// trimEvents deletes the oldest events beyond MaxEvents. Failure is logged,
// not returned: the event itself was stored, and the next trim catches up.
func (s *Store) trimEvents(ctx context.Context) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return
	}
	defer cancel()
	p := s.eventsPrefix()
	cnt, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		s.log.Warn("count events for trimming", "err", wrapErr(ctx, "count events", err))
		return
	}
	excess := cnt.Count - int64(s.cfg.MaxEvents)
	if excess <= 0 {
		return
	}
	oldest, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(excess))
	if err != nil || len(oldest.Kvs) == 0 {
		s.log.Warn("list old events for trimming", "err", wrapErr(ctx, "list events", err))
		return
	}
	last := string(oldest.Kvs[len(oldest.Kvs)-1].Key)
	// Delete [first event, last old event]: a range, so one request however many.
	if _, err := s.cli.Delete(ctx, p, clientv3.WithRange(last+"\x00")); err != nil {
		s.log.Warn("trim events", "err", wrapErr(ctx, "trim events", err))
		return
	}
	s.log.Debug("trimmed event log", "deleted", len(oldest.Kvs))
}

// Events returns the newest limit events (all stored when limit <= 0),
// oldest first.
func (s *Store) Events(ctx context.Context, limit int) ([]cluster.Event, error) {
	evs, _, err := s.EventLog(ctx, limit)
	return evs, err
}

// EventLog is Events that also returns the store revision of the read: pass it
// to WatchEvents to follow the log from exactly where the read ended.
func (s *Store) EventLog(ctx context.Context, limit int) ([]cluster.Event, int64, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Get(ctx, s.eventsPrefix(), opts...)
	if err != nil {
		return nil, 0, wrapErr(ctx, "get events", err)
	}
	out := make([]cluster.Event, 0, len(resp.Kvs))
	for _, kv := range slices.Backward(resp.Kvs) {
		if e, ok := s.eventFromKV(kv); ok {
			out = append(out, e)
		}
	}
	return out, resp.Header.Revision, nil
}

func (s *Store) eventFromKV(kv *mvccpb.KeyValue) (cluster.Event, bool) {
	e, err := decodeEvent(kv.Value)
	if err != nil {
		s.log.Warn("skipping undecodable event", "key", string(kv.Key), "err", err)
		return cluster.Event{}, false
	}
	e.Revision = kv.CreateRevision
	return e, true
}

// WatchEvents streams events created after revision afterRev (0: after now),
// in revision order. If the watch breaks or its history was compacted away, it
// catches up by reading the stored events it has not sent yet, so it loses
// only events already trimmed from the log. The channel is closed when ctx
// ends or the Store is closed.
func (s *Store) WatchEvents(ctx context.Context, afterRev int64) <-chan cluster.Event {
	out := make(chan cluster.Event, 64)
	if afterRev <= 0 {
		// "Now" is when WatchEvents is called: an event appended right after
		// it returns is sent. Pinned here, not in the watch's goroutine,
		// which may run later (if the store cannot be read now, it pins
		// "now" itself, as soon as it can).
		if rev, err := s.eventsNow(ctx); err == nil {
			afterRev = rev
		}
	}
	started := s.goWatch(ctx, func(ctx context.Context) {
		defer close(out)
		s.watchEvents(ctx, afterRev, out)
	})
	if !started {
		close(out)
	}
	return out
}

// eventsNow is the store's revision now: events appended later have a
// higher one.
func (s *Store) eventsNow(ctx context.Context) (int64, error) {
	cctx, cancel, err := s.call(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(cctx, s.eventsPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func (s *Store) watchEvents(ctx context.Context, last int64, out chan<- cluster.Event) {
	var bo backoff
	send := func(e cluster.Event) bool {
		select {
		case out <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	p := s.eventsPrefix()
	// "After now" must be pinned to a revision first; otherwise a broken watch
	// would resume from a later "now" and skip what happened in between.
	for last <= 0 {
		rev, err := s.eventsNow(ctx)
		if errors.Is(err, ErrClosed) {
			return
		}
		if err == nil {
			last = rev
			break
		}
		s.log.Warn("event watch: read revision", "err", wrapErr(ctx, "get revision", err))
		if !wait.Sleep(ctx, bo.delay()) {
			return
		}
	}
	catchUp := false
	for ctx.Err() == nil {
		if catchUp {
			cctx, cancel, err := s.call(ctx)
			if err != nil {
				return
			}
			resp, err := s.cli.Get(cctx, p, clientv3.WithPrefix(), clientv3.WithMinCreateRev(last+1),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
			cancel()
			if err != nil {
				s.log.Warn("event watch: catch up", "err", wrapErr(ctx, "get events", err))
				if !wait.Sleep(ctx, bo.delay()) {
					return
				}
				continue
			}
			for _, kv := range resp.Kvs {
				if e, ok := s.eventFromKV(kv); ok && !send(e) {
					return
				}
			}
			last = resp.Header.Revision
			catchUp = false
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(last+1), clientv3.WithFilterDelete())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				s.log.Warn("event watch interrupted, catching up", "after_revision", last, "err", err)
				break
			}
			bo.reset()
			for _, ev := range resp.Events {
				last = ev.Kv.ModRevision
				if !ev.IsCreate() {
					continue // events are append-only; a rewrite is not a new event
				}
				if e, ok := s.eventFromKV(ev.Kv); ok && !send(e) {
					cancel()
					return
				}
			}
		}
		cancel()
		catchUp = true
		if !wait.Sleep(ctx, bo.delay()) {
			return
		}
	}
}
