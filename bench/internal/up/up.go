// Package up runs `holdfast up`'s default deployment in-process on free
// ports for the benchmarks that need the whole product (regions, buffer,
// proxy): one place that builds the binary, starts the supervisor and
// waits for both regions.
package up

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/freeport"
	"github.com/holdfast/holdfast/internal/supervisor"
)

// Cluster is a running deployment.
type Cluster struct {
	Dir    string
	Cfg    config.Config
	Sup    *supervisor.Supervisor
	Runner *drill.Runner
	// Keep leaves the data directory (logs included) in place on Stop.
	Keep bool
}

// Build compiles the holdfast binary the agents run from.
func Build() string {
	dir, err := os.MkdirTemp("", "holdfast-bench-bin-")
	if err != nil {
		log.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	out := filepath.Join(dir, "holdfast")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/holdfast")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("build holdfast (run from the repository root): %v", err)
	}
	return out
}

func freePort() int {
	p, err := freeport.Pick()
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func addr() string { return fmt.Sprintf("127.0.0.1:%d", freePort()) }

// Options adjust the default deployment.
type Options struct {
	Name string // data directory prefix
	// Tune changes the config before it starts (canary settings...).
	Tune func(*config.Config)
}

// Start runs the default two-region deployment on free ports and waits
// until both regions are up and the drills' table exists.
func Start(ctx context.Context, bin string, o Options) *Cluster {
	dir, err := os.MkdirTemp("", "holdfast-bench-"+o.Name+"-")
	if err != nil {
		log.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	cfg := config.Default()
	cfg.Cluster, cfg.DataDir = "bench", dir
	c, p := freePort(), freePort()
	cfg.Etcd.ClientURL, cfg.Etcd.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", c), fmt.Sprintf("http://127.0.0.1:%d", p)
	cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", c)}
	cfg.Proxy.WriterAddr, cfg.Proxy.ReaderAddr, cfg.Proxy.AdminAddr = addr(), addr(), addr()
	cfg.API.Addr, cfg.Buffer.EmbeddedAddr = addr(), addr()
	for ri := range cfg.Regions {
		if !cfg.Regions[ri].Proxy.IsZero() {
			cfg.Regions[ri].Proxy = config.RegionProxy{WriterAddr: addr(), ReaderAddr: addr(), AdminAddr: addr()}
		}
		for mi := range cfg.Regions[ri].Members {
			m := &cfg.Regions[ri].Members[mi]
			m.Port, m.AdvertisePort, m.MetricsPort = freePort(), freePort(), freePort()
		}
	}
	if o.Tune != nil {
		o.Tune(&cfg)
	}
	// The supervisor's own log (proxy, buffer, api) goes beside the data
	// directory (the supervisor refuses a data directory it did not
	// create), kept and removed with it.
	supLog, err := os.OpenFile(dir+".supervisor.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Binary: bin, QuietEvents: true},
		slog.New(slog.NewTextHandler(supLog, nil)))
	if err != nil {
		log.Fatal(err)
	}
	if err := sup.Open(ctx); err != nil {
		log.Fatal(err)
	}
	cfg.Resolve()
	token, err := api.ReadToken(cfg.API.AdminTokenFile)
	if err != nil {
		log.Fatal(err)
	}
	cut := &Cluster{Dir: dir, Cfg: cfg, Sup: sup, Runner: &drill.Runner{Store: sup.Store(), Cfg: cfg, AdminToken: token}}
	if err := cut.WaitStandbyRegion(ctx, 3*time.Minute); err != nil {
		log.Fatal(err)
	}
	if err := cut.Runner.Prepare(ctx); err != nil {
		log.Fatal(err)
	}
	return cut
}

// Stop stops everything and removes the data directory unless Keep.
func (c *Cluster) Stop() {
	_ = c.Sup.Close(context.Background())
	if !c.Keep {
		os.RemoveAll(c.Dir)
		os.Remove(c.Dir + ".supervisor.log")
	}
}

// WaitStandbyRegion waits until the standby region's leader streams and
// its other members replicate, and the primary region is healthy.
func (c *Cluster) WaitStandbyRegion(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if rs, err := admin.ReadRegions(ctx, c.Sup.Store(), c.Cfg); err == nil {
			ready := len(rs.Regions) == 2
			for _, r := range rs.Regions {
				if r.Leader == "" || r.Running != r.Members || (r.Role == "standby" && r.LagSeconds == nil) {
					ready = false
				}
			}
			if ready && c.Runner.CheckHealthy(ctx) == nil {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the standby region did not come up within %s", timeout)
}

// Member returns the first member pick accepts.
func (c *Cluster) Member(ctx context.Context, pick func(admin.MemberStatus, admin.Regions) bool) (admin.MemberStatus, bool) {
	st, err := admin.Status(ctx, c.Sup.Store(), c.Cfg)
	if err != nil {
		return admin.MemberStatus{}, false
	}
	rs, err := admin.ReadRegions(ctx, c.Sup.Store(), c.Cfg)
	if err != nil {
		return admin.MemberStatus{}, false
	}
	for _, m := range st.Members {
		if pick(m, rs) {
			return m, true
		}
	}
	return admin.MemberStatus{}, false
}

// MustMember is Member, fatal when none matches.
func (c *Cluster) MustMember(ctx context.Context, pick func(admin.MemberStatus, admin.Regions) bool) admin.MemberStatus {
	m, ok := c.Member(ctx, pick)
	if !ok {
		log.Fatal("member not found")
	}
	return m
}

// SuperDSN reaches member m directly as the superuser.
func (c *Cluster) SuperDSN(m admin.MemberStatus, db string) string {
	cred, _, err := c.Cfg.LoadSecrets()
	if err != nil {
		log.Fatal(err)
	}
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", m.Host, m.Port, cred.User, cred.Password, db)
}
