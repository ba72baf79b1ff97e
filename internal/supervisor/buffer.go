package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
)

// BufferConfig turns the deployment's buffer settings into the buffer's
// configuration. Writes are applied as the application role through the
// proxy's writer endpoint (which follows the primary and holds during a
// failover), or, with no proxy, to whichever member is the primary.
func BufferConfig(d config.Config, app config.Credentials) buffer.ServiceConfig {
	b := d.Buffer
	cc := buffer.DefaultCommitterConfig(committerDSN(d, app))
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

func committerDSN(d config.Config, app config.Credentials) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(app.User, app.Password), Path: "/" + app.Database}
	q := url.Values{"application_name": {"holdfast-buffer"}, "connect_timeout": {"10"}}
	if d.Proxy.Enabled && d.Proxy.WriterAddr != "" {
		u.Host = d.Proxy.WriterAddr
		host, _, _ := net.SplitHostPort(d.Proxy.WriterAddr)
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			q.Set("sslmode", "disable")
		} else {
			q.Set("sslmode", "require")
		}
	} else {
		var hosts []string
		for _, r := range d.Regions {
			for _, m := range r.Members {
				hosts = append(hosts, net.JoinHostPort(m.Host, fmt.Sprint(m.Port)))
			}
		}
		u.Host = strings.Join(hosts, ",")
		q.Set("target_session_attrs", "read-write")
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// startAPI starts the buffer and the HTTP server, as configured.
func (s *Supervisor) startAPI(ctx context.Context, app config.Credentials) error {
	if s.d.Buffer.Enabled {
		bc := BufferConfig(s.d, app)
		if s.d.API.Enabled {
			s.api = api.New(api.Config{Addr: s.d.API.Addr}, s.log)
			bc.Registerer = s.api.Registry()
		}
		var err error
		if s.buffer, err = buffer.StartService(ctx, bc, s.log); err != nil {
			return fmt.Errorf("write buffer: %w", err)
		}
		if s.api != nil {
			s.buffer.Register(s.api.Mux())
		}
	}
	if !s.d.API.Enabled {
		return nil
	}
	token, err := api.EnsureToken(s.d.API.AdminTokenFile)
	if err != nil {
		return err
	}
	if s.api == nil {
		s.api = api.New(api.Config{Addr: s.d.API.Addr}, s.log)
	}
	s.api.SetAdminToken(token)
	if s.buffer != nil {
		s.buffer.RegisterAdmin(s.api.Mux(), s.api.Guard)
	}
	return s.api.Start()
}

func (s *Supervisor) closeAPI() {
	if s.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.api.Close(ctx)
		cancel()
	}
	if s.buffer != nil {
		s.buffer.Close()
	}
}
