package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/store"
)

// BufferConfig turns the deployment's buffer settings into the buffer's
// configuration. Writes are applied as the application role through the
// proxy's writer endpoint (which follows the primary and holds during a
// failover), or, with no proxy, to whichever member is the primary. The
// kinds of write are those of GET /ingest, the drills' buffer path and
// the ToDo API.
func BufferConfig(d config.Config, app config.Credentials) (buffer.ServiceConfig, error) {
	hs, err := buffer.NewHandlers(buffer.IngestHandlers(), drill.BufferHandlers(), api.TodoHandlers())
	if err != nil {
		return buffer.ServiceConfig{}, err
	}
	b := d.Buffer
	cc := buffer.DefaultCommitterConfig(appDSN(d, app, false))
	cc.Log.Replicas = b.Replicas
	cc.Log.MaxBatchWrites = b.BatchMaxWrites
	cc.Log.MaxBatchBytes = int(b.BatchMaxSize)
	cc.MaxAttempts = b.MaxAttempts
	cc.RetryBase, cc.RetryMax = b.RetryBase.D(), b.RetryMax.D()
	cc.AckWait = b.RedeliveryAfter.D()
	ic := buffer.DefaultIngestConfig()
	ic.MaxKeyBytes, ic.MaxPayloadBytes, ic.AppendTimeout = int(b.MaxKeySize), int(b.MaxPayloadSize), b.AppendTimeout.D()
	return buffer.ServiceConfig{
		NATSURL:   b.NATSURL,
		Embedded:  buffer.EmbeddedConfig{Addr: b.EmbeddedAddr, StoreDir: filepath.Join(d.DataDir, "nats")},
		Committer: cc,
		Ingest:    ic,
		Handlers:  hs,
	}, nil
}

// ReplicationFromStore tells the buffer's committer where the primary and
// the standby regions' leaders are, from their reports in etcd (published
// every agent.loop_interval: a batch's acknowledgement waits about that
// long).
func ReplicationFromStore(d config.Config, st *store.Store) func(context.Context) (buffer.Replication, error) {
	return func(ctx context.Context) (buffer.Replication, error) {
		snap, err := st.Snapshot(ctx)
		if err != nil {
			return buffer.Replication{}, err
		}
		pr := admin.PrimaryRegion(d, snap.Topology)
		r := buffer.Replication{Standbys: map[string]buffer.Position{}}
		if l, ok := snap.Leaders[pr]; ok {
			if m, ok := snap.Members[l.Member]; ok && m.Role == cluster.RolePrimary {
				r.PrimaryTimeline = m.Timeline
			}
		}
		for region, l := range snap.Leaders {
			if region == pr {
				continue
			}
			m := snap.Members[l.Member] // a leader without a report has received nothing known
			r.Standbys[region] = buffer.Position{Timeline: m.Timeline, LSN: m.LSN}
		}
		return r, nil
	}
}

// appDSN connects as the application role to the proxy's writer (or
// reader) endpoint, or, with no proxy, to the members: the primary (or a
// standby if there is one).
func appDSN(d config.Config, app config.Credentials, reader bool) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(app.User, app.Password), Path: "/" + app.Database}
	q := url.Values{"application_name": {"holdfast-api"}, "connect_timeout": {"10"}}
	endpoint := d.Proxy.WriterAddr
	if reader {
		endpoint = d.Proxy.ReaderAddr
	}
	if d.Proxy.Enabled && endpoint != "" {
		u.Host = endpoint
		host, _, _ := net.SplitHostPort(endpoint)
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			q.Set("sslmode", "disable")
		} else {
			q.Set("sslmode", "require")
		}
	} else {
		var hosts []string
		for _, r := range d.Regions {
			for _, m := range r.Members {
				hosts = append(hosts, net.JoinHostPort(m.Host, fmt.Sprint(m.ReachPort())))
			}
		}
		u.Host = strings.Join(hosts, ",")
		q.Set("target_session_attrs", "read-write")
		if reader {
			q.Set("target_session_attrs", "prefer-standby")
		}
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}
