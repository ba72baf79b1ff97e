package supervisor

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
)

// BufferConfig turns the deployment's buffer settings into the buffer's
// configuration. Writes are applied as the application role through the
// proxy's writer endpoint (which follows the primary and holds during a
// failover), or, with no proxy, to whichever member is the primary.
func BufferConfig(d config.Config, app config.Credentials) buffer.ServiceConfig {
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
