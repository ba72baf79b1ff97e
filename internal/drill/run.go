package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// Scenarios and paths.
var (
	Scenarios = []string{"kill-primary", "kill-node", "pause-primary", "switchover", "partition-primary", "region-switchover", "region-outage"}
	Paths     = []string{"direct", "proxy", "buffer"}
)

// RunConfig is one drill.
type RunConfig struct {
	Scenario, Path string
	// Rate is writes per second; Duration the whole load, the fault
	// coming after a third of it.
	Rate     float64
	Duration time.Duration
	// PauseFor is how long pause-primary keeps the primary stopped and
	// partition-primary keeps it cut off.
	PauseFor time.Duration
	// Concurrency bounds the writes in flight (default: enough for Rate
	// at 50 ms each, at least 8).
	Concurrency int
	// Observe, if set, hears every write's outcome as it completes (the
	// dashboard's live charts).
	Observe func(Record)
	// Phase, if set, hears the drill's steps: "load", "fault" (at is the
	// fault's time, what names it), "recovering", "draining", "reconciling".
	Phase func(phase, what string, at time.Time)
}

func (c RunConfig) phase(phase, what string, at time.Time) {
	if c.Phase != nil {
		c.Phase(phase, what, at)
	}
}

// Validate names what is wrong.
func (c RunConfig) Validate() error {
	switch {
	case !slices.Contains(Scenarios, c.Scenario):
		return fmt.Errorf("unknown scenario %q (scenarios: %s)", c.Scenario, strings.Join(Scenarios, ", "))
	case !slices.Contains(Paths, c.Path):
		return fmt.Errorf("unknown path %q (paths: %s)", c.Path, strings.Join(Paths, ", "))
	case c.Rate <= 0 || c.Rate > 100000:
		return fmt.Errorf("rate %v must be between 1 and 100000 writes/s", c.Rate)
	case c.Duration < 3*time.Second:
		return fmt.Errorf("duration %s is too short (minimum 3s: the fault comes after a third)", c.Duration)
	}
	return nil
}

// Runner runs drills against a cluster.
type Runner struct {
	Store *store.Store
	Cfg   config.Config // resolved
	Log   *slog.Logger
	// AdminToken authenticates the buffer's status route (drain wait).
	AdminToken string
	// Progress, if set, hears what the drill is doing.
	Progress func(string)
}

func (r *Runner) progress(format string, args ...any) {
	if r.Progress != nil {
		r.Progress(fmt.Sprintf(format, args...))
	}
}

// ErrBusy is returned when another drill runs.
var ErrBusy = errors.New("another drill is running")

// ErrUnhealthy is returned for a cluster a drill would not measure fairly.
var ErrUnhealthy = errors.New("the cluster is not healthy")

// Run runs one drill and reconciles it.
func (r *Runner) Run(ctx context.Context, rc RunConfig) (Report, error) {
	if err := rc.Validate(); err != nil {
		return Report{}, err
	}
	if rc.PauseFor == 0 {
		rc.PauseFor = 5 * time.Second
	}
	if rc.Concurrency == 0 {
		rc.Concurrency = max(8, int(rc.Rate/20))
	}
	st, err := admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return Report{}, err
	}
	primary, err := healthy(st)
	if err != nil {
		return Report{}, err
	}
	targetRegion := ""
	if rc.Scenario == "region-switchover" || rc.Scenario == "region-outage" {
		if targetRegion, err = r.standbyRegion(ctx); err != nil {
			return Report{}, err
		}
	}
	outage := rc.Scenario == "region-outage"
	if outage && !r.Cfg.Failover.Canary {
		return Report{}, errors.New("region-outage needs failover.canary: true (the canary is what fails the region over)")
	}
	if rc.Scenario == "partition-primary" {
		if m, _, ok := r.Cfg.FindMember(primary.Name); !ok || !m.HasLink() {
			return Report{}, fmt.Errorf("partition-primary: the primary %s has no fault link in front of it (its advertise_port must differ from its port, and holdfast up runs the link)", primary.Name)
		}
	}
	name := fmt.Sprintf("%s-%s-%d", rc.Scenario, rc.Path, time.Now().UnixMilli())
	lease, release, err := r.Claim(ctx, name)
	if err != nil {
		return Report{}, err
	}
	defer release()

	adminCred, _, err := r.Cfg.LoadSecrets()
	if err != nil {
		return Report{}, err
	}
	if err := r.ensureTable(ctx, primary, adminCred); err != nil {
		return Report{}, err
	}
	writer, err := r.NewWriter(rc.Path)
	if err != nil {
		return Report{}, err
	}
	defer writer.Close()

	// The cluster's events go on the timeline.
	_, rev, err := r.Store.EventLog(ctx, 1)
	if err != nil {
		return Report{}, err
	}
	ectx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	var clusterEvents []cluster.Event
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		for e := range r.Store.WatchEvents(ectx, rev) {
			clusterEvents = append(clusterEvents, e)
		}
	}()

	load := &Load{Drill: name, Writer: writer, Rate: rc.Rate, Concurrency: rc.Concurrency, Timeout: 30 * time.Second, Observe: rc.Observe}
	lctx, stopLoad := context.WithTimeout(ctx, rc.Duration)
	if outage {
		// The load lasts until the standby region has taken over, however
		// long the canary takes, and a third of the duration more.
		lctx, stopLoad = context.WithCancel(ctx)
	}
	defer stopLoad()
	start := time.Now()
	done := make(chan struct{})
	go func() { load.Run(lctx); close(done) }()
	r.progress("%s on path %s: %.0f writes/s for %s (fault after %s)", rc.Scenario, rc.Path, rc.Rate, rc.Duration, rc.Duration/3)
	rc.phase("load", name, start)

	var timeline []Event
	select {
	case <-time.After(rc.Duration / 3):
	case <-ctx.Done():
		return Report{}, ctx.Err()
	}
	fault := time.Now()
	timeline = append(timeline, Event{Event: "fault: " + rc.Scenario + " " + primary.Name, At: fault})
	rc.phase("fault", rc.Scenario+" "+primary.Name, fault)
	if err := r.inject(ctx, rc, primary, name, lease, targetRegion); err != nil {
		stopLoad()
		<-done
		return Report{}, fmt.Errorf("inject %s: %w", rc.Scenario, err)
	}
	var takeover time.Time
	if outage {
		takeover, err = r.regionOutage(ctx, primary.Region, start.Add(rc.Duration), rc.Duration/3)
		stopLoad()
		if err != nil {
			<-done
			return Report{}, err
		}
	}
	<-done
	end := time.Now()
	r.progress("load stopped; waiting for recovery")
	rc.phase("recovering", "", end)
	if err := r.waitHealthy(ctx, 2*time.Minute); err != nil {
		return Report{}, err
	}
	if outage {
		r.waitRejoined(ctx, primary.Region, 3*time.Minute)
	}
	if rc.Path == "buffer" {
		r.progress("waiting for the write buffer to drain")
		rc.phase("draining", "", time.Now())
		if err := r.waitDrained(ctx, 5*time.Minute, end); err != nil {
			return Report{}, err
		}
	}
	stopEvents()
	<-eventsDone
	rc.phase("reconciling", "", time.Now())
	for _, e := range clusterEvents {
		if !e.Time.Before(start) {
			timeline = append(timeline, Event{Event: strings.TrimSpace(string(e.Kind) + " " + e.Member), At: e.Time})
		}
	}
	st, err = admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return Report{}, err
	}
	now, err := healthy(st)
	if err != nil {
		return Report{}, err
	}
	conn, err := pgx.Connect(ctx, MemberDSN(now, adminCred, r.Cfg.Postgres.AppDatabase))
	if err != nil {
		return Report{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stored, err := Stored(ctx, conn, name)
	if err != nil {
		return Report{}, err
	}
	var restored time.Time
	if outage {
		// Once every member of the lost region is down (its last "down"
		// event), the first row written is the first write the new
		// primary applied.
		down := fault
		for _, e := range clusterEvents {
			if e.Kind == cluster.EventMemberDown && e.Time.After(down) {
				down = e.Time
			}
		}
		if restored, err = FirstWrittenAfter(ctx, conn, name, down); err != nil {
			return Report{}, err
		}
		if !restored.IsZero() {
			timeline = append(timeline, Event{Event: "traffic restored " + now.Name, At: restored})
		}
	}
	rep := Summarize(rc.Scenario, rc.Path, rc.Rate, Window{Start: start, End: end, Fault: fault}, load.Records(), stored, timeline)
	if outage {
		rep.Region = RegionOutageTimeline(primary.Region, now.Region, fault, takeover, restored, clusterEvents)
	}
	return rep, nil
}

// Claim takes the cluster's drill slot for name (one drill at a time) under
// a lease kept alive until release is called; faults set under the lease
// end with it if the drill dies.
func (r *Runner) Claim(ctx context.Context, name string) (lease store.LeaseID, release func(), err error) {
	if lease, err = r.Store.GrantLease(ctx, 10*time.Second); err != nil {
		return 0, nil, err
	}
	won, holder, err := r.Store.ClaimDrill(ctx, name, lease)
	if err != nil || !won {
		_ = r.Store.RevokeLease(context.WithoutCancel(ctx), lease)
		if err == nil {
			err = fmt.Errorf("%w (%s); wait for it to end", ErrBusy, holder)
		}
		return 0, nil, err
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				_, _ = r.Store.KeepAliveOnce(kctx, lease)
			}
		}
	}()
	return lease, func() {
		stop()
		<-done
		_ = r.Store.ReleaseDrill(context.WithoutCancel(ctx), name)
		_ = r.Store.RevokeLease(context.WithoutCancel(ctx), lease)
	}, nil
}

// healthy returns the primary of a cluster fit for a drill: a running
// primary holding the leader key, and a synchronous replica streaming.
func healthy(st admin.ClusterStatus) (admin.MemberStatus, error) {
	var primary *admin.MemberStatus
	replicas := 0
	for i, m := range st.Members {
		switch {
		case m.Role == cluster.RolePrimary && m.Leader && m.State == cluster.StateRunning:
			primary = &st.Members[i]
		case m.Role == cluster.RoleReplica && m.State == cluster.StateRunning && m.Sync:
			replicas++
		}
	}
	if primary == nil {
		return admin.MemberStatus{}, fmt.Errorf("%w: no running primary", ErrUnhealthy)
	}
	if replicas == 0 {
		return admin.MemberStatus{}, fmt.Errorf("%w: no synchronous replica streaming (a failover could not be measured)", ErrUnhealthy)
	}
	return *primary, nil
}

// CheckHealthy says whether the cluster is fit for a drill now (nil) or
// why not (wrapping ErrUnhealthy).
func (r *Runner) CheckHealthy(ctx context.Context) error {
	st, err := admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return err
	}
	_, err = healthy(st)
	return err
}

// WaitHealthy waits until the cluster is fit for a drill (between drills:
// the old primary rejoining).
func (r *Runner) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return r.waitHealthy(ctx, timeout)
}

func (r *Runner) waitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := admin.Status(ctx, r.Store, r.Cfg)
		if err == nil {
			if _, err = healthy(st); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not recover within %s: %v", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitDrained waits, at most timeout, until the write buffer has nothing
// pending that was accepted before end.
func (r *Runner) WaitDrained(ctx context.Context, timeout time.Duration, end time.Time) error {
	return r.waitDrained(ctx, timeout, end)
}

// waitDrained waits until the buffer has nothing pending that was accepted
// before end: other traffic (the dashboard's load) may keep it busy.
func (r *Runner) waitDrained(ctx context.Context, timeout time.Duration, end time.Time) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.Cfg.API.Addr+"/v1/buffer/status", nil)
		req.Header.Set("Authorization", "Bearer "+r.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var st buffer.Status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				oldest := time.Now().Add(-time.Duration(st.OldestPendingSeconds * float64(time.Second)))
				if st.Pending == 0 || oldest.After(end) {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the write buffer did not drain within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// MemberDSN reaches member m directly (through its advertised port) as cred.
func MemberDSN(m admin.MemberStatus, cred config.Credentials, db string) string {
	return (&url.URL{Scheme: "postgres", User: url.UserPassword(cred.User, cred.Password), Host: fmt.Sprintf("%s:%d", m.Host, m.Port),
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=5"}).String()
}

func (r *Runner) ensureTable(ctx context.Context, primary admin.MemberStatus, cred config.Credentials) error {
	conn, err := pgx.Connect(ctx, MemberDSN(primary, cred, r.Cfg.Postgres.AppDatabase))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return buffer.RunDDL(ctx, conn, []string{TableDDL, `CREATE INDEX IF NOT EXISTS drill_writes_drill ON drill_writes (drill)`,
		"GRANT INSERT, SELECT ON drill_writes TO " + pgx.Identifier{r.Cfg.Postgres.AppUser}.Sanitize()})
}

// Prepare creates the drills' table on the primary (the dashboard's load
// does this before writing; Run does it itself).
func (r *Runner) Prepare(ctx context.Context) error {
	st, err := admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return err
	}
	primary, ok := st.PrimaryMember()
	if !ok {
		return fmt.Errorf("%w: no running primary", ErrUnhealthy)
	}
	adminCred, _, err := r.Cfg.LoadSecrets()
	if err != nil {
		return err
	}
	return r.ensureTable(ctx, primary, adminCred)
}

// ProxyDSN is the application role's DSN on the proxy's writer endpoint,
// or its reader endpoint.
func (r *Runner) ProxyDSN(reader bool) (string, error) {
	addr, field := r.Cfg.Proxy.WriterAddr, "proxy.writer_addr"
	if reader {
		addr, field = r.Cfg.Proxy.ReaderAddr, "proxy.reader_addr"
	}
	if !r.Cfg.Proxy.Enabled || addr == "" {
		return "", fmt.Errorf("proxy.enabled is false or %s empty", field)
	}
	app, err := config.ReadCredentials(r.Cfg.Postgres.SecretsDir + "/" + config.AppSecrets)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "postgres", User: url.UserPassword(app.User, app.Password), Host: addr,
		Path: "/" + app.Database, RawQuery: "sslmode=disable&connect_timeout=5"}).String(), nil
}

// NewWriter builds the writer of a path.
func (r *Runner) NewWriter(path string) (Writer, error) {
	adminCred, _, err := r.Cfg.LoadSecrets()
	if err != nil {
		return nil, err
	}
	switch path {
	case "direct":
		// An application without a proxy: it asks who the primary is and
		// reconnects there after an error.
		return &SQLWriter{Conns: 16, Target: func(ctx context.Context) (string, error) {
			st, err := admin.Status(ctx, r.Store, r.Cfg)
			if err != nil {
				return "", err
			}
			if m, ok := st.PrimaryMember(); ok {
				return MemberDSN(m, adminCred, r.Cfg.Postgres.AppDatabase), nil
			}
			return "", errors.New("no primary")
		}}, nil
	case "proxy":
		dsn, err := r.ProxyDSN(false)
		if err != nil {
			return nil, fmt.Errorf("path proxy: %w", err)
		}
		return &SQLWriter{Conns: 16, Target: func(context.Context) (string, error) { return dsn, nil }}, nil
	case "buffer":
		if !r.Cfg.API.Enabled || !r.Cfg.Buffer.Enabled {
			return nil, errors.New("path buffer: api.enabled and buffer.enabled must be true")
		}
		return &BufferWriter{URL: "http://" + r.Cfg.API.Addr, Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}, nil
	}
	return nil, fmt.Errorf("unknown path %q (paths: %s)", path, strings.Join(Paths, ", "))
}
