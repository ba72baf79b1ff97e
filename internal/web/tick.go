package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/proxy"
)

// tickLoop sends a tick a second: the cluster as it is now and the second
// of traffic that just ended.
func (l *Lab) tickLoop() {
	counter := newRecordCounter()
	defer counter.close()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.doTick(counter, client)
	}
}

func (l *Lab) doTick(counter *recordCounter, client *http.Client) {
	ctx, cancel := context.WithTimeout(l.ctx, 900*time.Millisecond)
	defer cancel()
	tick := Tick{Now: time.Now()}
	st, err := admin.Status(ctx, l.cfg.Store, l.cfg.Deployment)
	if err != nil {
		tick.Cluster = ClusterView{Cluster: l.cfg.Deployment.Cluster, Members: []Member{}, Error: err.Error()}
	} else {
		tick.Cluster = ClusterView{Cluster: st.Cluster, Primary: st.Primary, Generation: st.Generation, Paused: st.Paused}
		// Counting scans the table on every member: only for a viewer.
		var counts map[string]*int64
		if l.hub.watching() {
			counts = counter.count(ctx, st.Members, l.memberDSN, time.Now())
		}
		for _, m := range st.Members {
			tick.Cluster.Members = append(tick.Cluster.Members, Member{MemberStatus: m, Records: counts[m.Name]})
		}
		if rs, err := admin.ReadRegions(ctx, l.cfg.Store, l.cfg.Deployment); err == nil {
			tick.Cluster.Regions = &rs
		}
	}
	if d := l.cfg.Deployment; d.Proxy.Enabled && d.Proxy.AdminAddr != "" {
		tick.Proxy = proxyStatus(ctx, client, d.Proxy.AdminAddr)
		for _, r := range d.Regions {
			if r.Name != d.PrimaryRegion && r.Proxy.AdminAddr != "" {
				if tick.RegionProxies == nil {
					tick.RegionProxies = map[string]*proxy.Status{}
				}
				tick.RegionProxies[r.Name] = proxyStatus(ctx, client, r.Proxy.AdminAddr)
			}
		}
	}
	if l.cfg.Buffer != nil {
		if bs, err := l.cfg.Buffer.Status(ctx); err == nil {
			tick.Buffer = &BufferView{Pending: bs.Pending, Dead: bs.Dead}
		}
	}
	var waiting int64
	if tick.Proxy != nil {
		waiting = tick.Proxy.Waiting
	}
	buckets := l.series.close(time.Now(), waiting)
	l.mu.Lock()
	if l.load != nil {
		l.load.sample()
	}
	tick.Load, tick.Drill = l.loadStateLocked(), l.drill
	if len(buckets) > 0 {
		b := buckets[len(buckets)-1]
		tick.Bucket = &b
	}
	l.tick = tick
	l.mu.Unlock()
	// One tick per second closed, so that a late tick loses no chart point.
	for i := range buckets {
		t := tick
		t.Bucket = &buckets[i]
		l.hub.broadcast("tick", t)
	}
	if len(buckets) == 0 {
		l.hub.broadcast("tick", tick)
	}
}

func proxyStatus(ctx context.Context, client *http.Client, addr string) *proxy.Status {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/status", nil)
	if err != nil {
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st proxy.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return &st
}

// memberDSN reaches a member as the administrator, the way clients do.
func (l *Lab) memberDSN(m admin.MemberStatus) string {
	return drill.MemberDSN(m, l.admin, l.cfg.Deployment.Postgres.AppDatabase)
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// recordCounter reads the drill table's row count from each member itself,
// over a connection kept per member. A count is a scan of the whole table:
// one that took d is not run again on that member before countSpacing×d
// has passed (its last value stands in), so that a table of millions of
// rows on a loaded member costs a small share of its time, not a core.
type recordCounter struct {
	mu    sync.Mutex
	conns map[string]*pgx.Conn
	last  map[string]lastCount
}

// lastCount is a member's latest count and what it cost.
type lastCount struct {
	n       int64
	ok      bool
	started time.Time
	took    time.Duration
}

// countSpacing is how many times its own duration a count waits before the
// next on the same member.
const countSpacing = 20

func newRecordCounter() *recordCounter {
	return &recordCounter{conns: map[string]*pgx.Conn{}, last: map[string]lastCount{}}
}

// due reports whether a member's count is to be read again at now, and
// what stands in for it otherwise.
func (c *recordCounter) due(name string, now time.Time) (lastCount, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, seen := c.last[name]
	return l, !seen || now.Sub(l.started) >= countSpacing*l.took
}

func (c *recordCounter) count(ctx context.Context, members []admin.MemberStatus, dsn func(admin.MemberStatus) string, now time.Time) map[string]*int64 {
	out := map[string]*int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if l, due := c.due(m.Name, now); !due {
			if l.ok {
				n := l.n
				mu.Lock() // the counts of members before are being written
				out[m.Name] = &n
				mu.Unlock()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, ok := c.one(ctx, m, dsn)
			c.mu.Lock()
			c.last[m.Name] = lastCount{n: n, ok: ok, started: now, took: time.Since(now)}
			c.mu.Unlock()
			if ok {
				mu.Lock()
				out[m.Name] = &n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func (c *recordCounter) one(ctx context.Context, m admin.MemberStatus, dsn func(admin.MemberStatus) string) (int64, bool) {
	c.mu.Lock()
	conn := c.conns[m.Name]
	delete(c.conns, m.Name)
	c.mu.Unlock()
	if conn == nil || conn.IsClosed() || conn.Config().Port != uint16(m.Port) {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
		var err error
		if conn, err = pgx.Connect(ctx, dsn(m)); err != nil {
			return 0, false
		}
	}
	var n int64
	err := conn.QueryRow(ctx, "SELECT count(*) FROM drill_writes").Scan(&n)
	if err != nil && !isUndefinedTable(err) {
		// A timeout leaves the connection mid-query: start afresh.
		_ = conn.Close(context.Background())
		return 0, false
	}
	c.mu.Lock()
	c.conns[m.Name] = conn
	c.mu.Unlock()
	return n, true
}

func (c *recordCounter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close(context.Background())
	}
}
