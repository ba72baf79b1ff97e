package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

// Binaries of the peers, as installed by bench/failover.sh from Debian's
// packages (patroni, etcd-server, postgresql-15).
const (
	patroniBin = "/usr/bin/patroni"
	etcdBin    = "/usr/bin/etcd"
	pgBinDir   = "/usr/lib/postgresql/15/bin"
)

// patroniTarget runs a three-member Patroni cluster (synchronous_mode, so
// that acknowledged writes survive a failover as with holdfast) on one etcd
// server, everything in a fresh temporary directory. Patroni and PostgreSQL
// run as the postgres OS user.
type patroniTarget struct {
	name                         string
	ttl, loopWait, retryTimeout  int
	dir, scope                   string
	uid, gid                     uint32
	groups                       []uint32
	superPass, replPass, appPass string
	etcdPort                     int
	etcd                         *peerProc
	nodes                        []*patroniNode
	http                         *http.Client
}

type patroniNode struct {
	name            string
	dir, dataDir    string
	pgPort, apiPort int
	proc            *peerProc // the reaper wrapping Patroni
	patroniPID      int
}

// peerProc is a child process in its own process group.
type peerProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
}

const patroniAppUser = "bench"

// newPatroni is Patroni with its default timing: ttl 30, loop_wait 10,
// retry_timeout 10.
func newPatroni() (Target, error) {
	return &patroniTarget{name: "patroni", ttl: 30, loopWait: 10, retryTimeout: 10}, nil
}

// newPatroniTight is Patroni tuned for fast failover: ttl 20, loop_wait 1,
// retry_timeout 5.
func newPatroniTight() (Target, error) {
	return &patroniTarget{name: "patroni-tight", ttl: 20, loopWait: 1, retryTimeout: 5}, nil
}

func (p *patroniTarget) Name() string { return p.name }

func randomSecret() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (p *patroniTarget) Start(ctx context.Context) (err error) {
	for _, b := range []string{patroniBin, etcdBin, filepath.Join(pgBinDir, "postgres")} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: run bench/failover.sh, which installs the peers", b)
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("patroni runs as the postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if euid := os.Geteuid(); euid != 0 && euid != uid {
		return errors.New("the patroni target runs Patroni as the postgres OS user: run the benchmark as root or as postgres")
	}
	p.uid, p.gid = uint32(uid), uint32(gid)
	p.groups = nil
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.Atoi(g); err == nil {
				p.groups = append(p.groups, uint32(n))
			}
		}
	}
	p.http = &http.Client{Timeout: 2 * time.Second}
	p.superPass, p.replPass, p.appPass = randomSecret(), randomSecret(), randomSecret()

	p.dir, err = os.MkdirTemp("", "patroni-bench-")
	if err != nil {
		return err
	}
	// Start does not return a half-started cluster: measure only calls
	// Stop after a successful Start.
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return err
	}
	// The directory name is unique: it is also the Patroni scope and so
	// PostgreSQL's cluster_name, which every postgres process shows in its
	// title. Stop finds leftovers by it.
	p.scope = filepath.Base(p.dir)

	if err := p.startEtcd(ctx); err != nil {
		return err
	}
	p.nodes = nil
	for i := 0; i < 3; i++ {
		n := &patroniNode{name: fmt.Sprintf("node%d", i+1), pgPort: freePort(), apiPort: freePort()}
		n.dir = filepath.Join(p.dir, n.name)
		n.dataDir = filepath.Join(n.dir, "data")
		if err := os.Mkdir(n.dir, 0o700); err != nil {
			return err
		}
		if err := os.Chown(n.dir, uid, gid); err != nil {
			return err
		}
		p.nodes = append(p.nodes, n)
	}
	for _, n := range p.nodes {
		if err := p.startNode(n); err != nil {
			return err
		}
	}
	leader, err := p.waitReady(ctx, 3*time.Minute)
	if err != nil {
		return err
	}
	for _, n := range p.nodes {
		if n.patroniPID, err = childPID(n.proc.cmd.Process.Pid, patroniBin); err != nil {
			return err
		}
	}
	return p.createSchema(ctx, p.nodes[leader])
}

// startProc starts cmd in its own process group with its output appended to
// logPath. It runs on a locked OS thread that lives as long as the child,
// so that Pdeathsig (which fires when the forking thread exits) only fires
// when this benchmark dies.
func startProc(cmd *exec.Cmd, logPath string) (*peerProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pp := &peerProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(pp.done)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return pp, nil
}

// kill sends sig to the process group and waits up to wait for the leader
// to be reaped.
func (pp *peerProc) kill(sig syscall.Signal, wait time.Duration) bool {
	if pp == nil || pp.cmd.Process == nil {
		return true
	}
	select {
	case <-pp.done:
		return true
	default:
	}
	_ = syscall.Kill(-pp.cmd.Process.Pid, sig)
	select {
	case <-pp.done:
		return true
	case <-time.After(wait):
		return false
	}
}

func (p *patroniTarget) startEtcd(ctx context.Context) error {
	p.etcdPort = freePort()
	peerPort := freePort()
	client := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cmd := exec.Command(etcdBin,
		"--name", "etcd1",
		"--data-dir", filepath.Join(p.dir, "etcd"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcd1="+peer,
		"--initial-cluster-token", p.scope,
		"--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr",
	)
	cmd.Dir = p.dir
	var err error
	if p.etcd, err = startProc(cmd, filepath.Join(p.dir, "etcd.log")); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var h struct {
			Health string `json:"health"`
		}
		if err := p.getJSON(ctx, client+"/health", &h); err == nil && h.Health == "true" {
			return nil
		}
		select {
		case <-p.etcd.done:
			return fmt.Errorf("etcd exited; see %s", filepath.Join(p.dir, "etcd.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("etcd not healthy after 30s")
		}
	}
}

func (p *patroniTarget) patroniConfig(n *patroniNode) map[string]any {
	api := fmt.Sprintf("127.0.0.1:%d", n.apiPort)
	pg := fmt.Sprintf("127.0.0.1:%d", n.pgPort)
	return map[string]any{
		"scope": p.scope,
		"name":  n.name,
		"log":   map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          api,
			"connect_address": api,
		},
		"etcd3": map[string]any{"hosts": []string{fmt.Sprintf("127.0.0.1:%d", p.etcdPort)}},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl":                     p.ttl,
				"loop_wait":               p.loopWait,
				"retry_timeout":           p.retryTimeout,
				"maximum_lag_on_failover": 1048576,
				"synchronous_mode":        true,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
				},
			},
			"initdb": []any{
				map[string]any{"encoding": "UTF8"},
				map[string]any{"locale": "C.UTF-8"},
			},
		},
		"postgresql": map[string]any{
			"listen":          pg,
			"connect_address": pg,
			"data_dir":        n.dataDir,
			"bin_dir":         pgBinDir,
			"pgpass":          filepath.Join(n.dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": "postgres", "password": p.superPass},
				"replication": map[string]any{"username": "replicator", "password": p.replPass},
			},
			// PostgreSQL's defaults otherwise; shared_buffers as small
			// as holdfast's, since three members share the machine.
			"parameters": map[string]any{
				"unix_socket_directories": n.dir,
				"shared_buffers":          "32MB",
				"password_encryption":     "scram-sha-256",
			},
			"pg_hba": []string{
				"local all all peer",
				"host all all 127.0.0.1/32 scram-sha-256",
				"host replication all 127.0.0.1/32 scram-sha-256",
			},
		},
	}
}

func (p *patroniTarget) startNode(n *patroniNode) error {
	b, err := yaml.Marshal(p.patroniConfig(n))
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(n.dir, "patroni.yml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	if err := os.Chown(cfgPath, int(p.uid), int(p.gid)); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Patroni runs under this very binary acting as a reaper (see
	// runReaper), which then drops to the postgres user.
	cmd := exec.Command(self, patroniBin, cfgPath)
	cmd.Dir = n.dir
	cmd.Env = []string{
		reaperEnv + "=" + strings.Join([]string{
			strconv.Itoa(int(p.uid)), strconv.Itoa(int(p.gid)), joinUint32(p.groups)}, ":"),
		"HOME=" + n.dir,
		"USER=postgres",
		"LOGNAME=postgres",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1",
	}
	n.proc, err = startProc(cmd, filepath.Join(p.dir, n.name+".log"))
	return err
}

func (p *patroniTarget) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	// /patroni answers 503 with a valid body when PostgreSQL is not
	// running as a primary.
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.Unmarshal(b, v)
}

type patroniCluster struct {
	Members []struct {
		Name  string `json:"name"`
		Role  string `json:"role"` // leader, sync_standby, replica
		State string `json:"state"`
	} `json:"members"`
}

type patroniStatus struct {
	State       string `json:"state"`
	Role        string `json:"role"`
	Replication []struct {
		ApplicationName string `json:"application_name"`
		State           string `json:"state"`
		SyncState       string `json:"sync_state"`
	} `json:"replication"`
}

func (n *patroniNode) api(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", n.apiPort, path)
}

// cluster asks the members in turn for the cluster view in the DCS.
func (p *patroniTarget) cluster(ctx context.Context) (patroniCluster, error) {
	var lastErr error
	for _, n := range p.nodes {
		var c patroniCluster
		if lastErr = p.getJSON(ctx, n.api("/cluster"), &c); lastErr == nil {
			return c, nil
		}
	}
	return patroniCluster{}, lastErr
}

func (p *patroniTarget) nodeIndex(name string) int {
	for i, n := range p.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// leader returns the index of the member holding the leader key.
func (p *patroniTarget) leader(ctx context.Context) (int, error) {
	c, err := p.cluster(ctx)
	if err != nil {
		return -1, err
	}
	for _, m := range c.Members {
		if m.Role == "leader" {
			if i := p.nodeIndex(m.Name); i >= 0 {
				return i, nil
			}
		}
	}
	return -1, errors.New("no leader")
}

// waitReady waits until all three members run, one leads, a synchronous
// standby is chosen and both replicas stream from the leader.
func (p *patroniTarget) waitReady(ctx context.Context, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	why := "no answer from the REST API"
	for {
		if ok, idx, reason := p.ready(ctx); ok {
			return idx, nil
		} else if reason != "" {
			why = reason
		}
		for _, n := range p.nodes {
			select {
			case <-n.proc.done:
				return -1, fmt.Errorf("patroni %s exited; see %s", n.name, filepath.Join(p.dir, n.name+".log"))
			default:
			}
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("cluster not ready after %s: %s (logs in %s)", limit, why, p.dir)
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (p *patroniTarget) ready(ctx context.Context) (bool, int, string) {
	c, err := p.cluster(ctx)
	if err != nil {
		return false, -1, ""
	}
	if len(c.Members) != len(p.nodes) {
		return false, -1, fmt.Sprintf("%d of %d members registered", len(c.Members), len(p.nodes))
	}
	leader, sync := -1, 0
	for _, m := range c.Members {
		// Patroni 3.0 says "running" for every member; later versions
		// say "streaming" for a replica that streams.
		if m.State != "running" && m.State != "streaming" {
			return false, -1, fmt.Sprintf("%s is %s", m.Name, m.State)
		}
		switch m.Role {
		case "leader":
			leader = p.nodeIndex(m.Name)
		case "sync_standby":
			sync++
		}
	}
	if leader < 0 {
		return false, -1, "no leader"
	}
	if sync == 0 {
		return false, -1, "no synchronous standby yet"
	}
	var st patroniStatus
	if err := p.getJSON(ctx, p.nodes[leader].api("/patroni"), &st); err != nil {
		return false, -1, err.Error()
	}
	streaming := 0
	for _, r := range st.Replication {
		if r.State == "streaming" && p.nodeIndex(r.ApplicationName) >= 0 {
			streaming++
		}
	}
	if streaming != len(p.nodes)-1 {
		return false, -1, fmt.Sprintf("%d of %d replicas streaming", streaming, len(p.nodes)-1)
	}
	return true, leader, ""
}

func (p *patroniTarget) createSchema(ctx context.Context, leader *patroniNode) error {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=5", leader.pgPort, p.superPass))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", patroniAppUser, p.appPass),
		"CREATE TABLE bench (id bigint PRIMARY KEY)",
		"GRANT SELECT, INSERT ON bench TO " + patroniAppUser,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(q, " PASSWORD", 2)[0], err)
		}
	}
	return nil
}

func (p *patroniTarget) DSNs() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres connect_timeout=1", n.pgPort, patroniAppUser, p.appPass))
	}
	return out
}

func (p *patroniTarget) Primary(ctx context.Context) (int, int, int, error) {
	idx, err := p.leader(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	n := p.nodes[idx]
	pm, ok := readPostmasterPID(n.dataDir)
	if !ok {
		return 0, 0, 0, fmt.Errorf("no postmaster.pid in %s", n.dataDir)
	}
	return idx, pm.pid, n.patroniPID, nil
}

// Switchover posts /switchover to the leader without a candidate (Patroni
// picks the synchronous standby). Patroni answers when the new leader holds
// the leader key: 200, or 503 if it failed or it could not tell.
func (p *patroniTarget) Switchover(ctx context.Context) error {
	leader, err := p.leader(ctx)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"leader": p.nodes[leader].name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.nodes[leader].api("/switchover"), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted:
		return nil
	}
	return fmt.Errorf("POST /switchover: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
}

// pmInfo is what postmaster.pid says: the pid and the System V shared
// memory segment, which a postmaster killed with SIGKILL leaves behind.
type pmInfo struct {
	pid           int
	shmKey, shmID int64
}

func readPostmasterPID(dataDir string) (pmInfo, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pmInfo{}, false
	}
	lines := strings.Split(string(b), "\n")
	var pm pmInfo
	if pm.pid, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil {
		return pmInfo{}, false
	}
	if len(lines) > 6 {
		if f := strings.Fields(lines[6]); len(f) == 2 {
			pm.shmKey, _ = strconv.ParseInt(f[0], 10, 64)
			pm.shmID, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return pm, true
}

// runProcs lists the processes of the postgres OS user whose command line
// mentions this run's scope: Patroni (its config path), postmasters (-D),
// backends (cluster_name in their title), initdb, pg_basebackup.
func (p *patroniTarget) runProcs() []int {
	var pids []int
	if p.scope == "" {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || st.Uid != p.uid {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if bytes.Contains(cl, []byte(p.scope)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (p *patroniTarget) Stop() {
	// Patroni first, so that nothing restarts PostgreSQL. Its process group
	// also holds whatever it runs in the foreground (initdb, pg_basebackup).
	for _, n := range p.nodes {
		if !n.proc.kill(syscall.SIGKILL, 5*time.Second) {
			log.Printf("%s: patroni %s did not exit", p.name, n.name)
		}
	}
	// PostgreSQL runs in a session of its own: an immediate shutdown of each
	// postmaster stops its children and removes its shared memory.
	var pms []pmInfo
	for _, n := range p.nodes {
		pm, ok := readPostmasterPID(n.dataDir)
		if !ok {
			continue
		}
		pms = append(pms, pm)
		if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pm.pid)); err == nil && bytes.Contains(cl, []byte(n.dataDir)) {
			_ = syscall.Kill(pm.pid, syscall.SIGQUIT)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := p.runProcs()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			log.Printf("%s: postgres processes survive Stop: %v", p.name, left)
			break
		}
		if time.Until(deadline) < 5*time.Second {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Shared memory of postmasters killed with SIGKILL (the faults) that
	// nobody restarted in the same data directory.
	for _, pm := range pms {
		removeOrphanShm(pm.shmKey, pm.shmID)
	}
	if !p.etcd.kill(syscall.SIGTERM, 5*time.Second) && !p.etcd.kill(syscall.SIGKILL, 5*time.Second) {
		log.Printf("%s: etcd did not exit", p.name)
	}
	if p.dir != "" && os.Getenv("PATRONI_BENCH_KEEP") != "" {
		log.Printf("%s: PATRONI_BENCH_KEEP is set: logs kept in %s", p.name, p.dir)
	} else if p.dir != "" {
		if err := os.RemoveAll(p.dir); err != nil {
			log.Printf("%s: %v", p.name, err)
		}
	}
	p.nodes, p.etcd, p.dir, p.scope = nil, nil, "", ""
}

// removeOrphanShm removes the System V segment id if it still has the key
// postmaster.pid named and no process attached.
func removeOrphanShm(key, id int64) {
	if id <= 0 {
		return
	}
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		k, _ := strconv.ParseInt(f[0], 10, 64)
		i, _ := strconv.ParseInt(f[1], 10, 64)
		if k == key && i == id && f[6] == "0" {
			const ipcRMID = 0
			_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
		}
	}
}

func joinUint32(v []uint32) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.Itoa(int(x)))
	}
	return strings.Join(s, ",")
}

// reaperEnv, when set ("uid:gid:group,group"), turns this binary into a
// wrapper that runs the command in its arguments as that user and reaps
// every orphan below it.
//
// Why: Patroni starts the postmaster pg_ctl-style, as an orphan that init
// adopts. An init that reaps late (this machine's reaps about once a
// second; systemd reaps at once) leaves a postmaster killed with SIGKILL as
// a zombie that Patroni takes for a running PostgreSQL, which delays its
// recovery by an HA loop for reasons that have nothing to do with Patroni.
// As a child subreaper the wrapper adopts and reaps such orphans at once,
// as systemd would.
const reaperEnv = "HOLDFAST_BENCH_PATRONI_REAPER"

func init() {
	if v, ok := os.LookupEnv(reaperEnv); ok {
		os.Exit(runReaper(v, os.Args[1:]))
	}
}

func runReaper(cred string, args []string) int {
	runtime.LockOSThread() // the child's Pdeathsig follows this thread
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "reaper: PR_SET_CHILD_SUBREAPER:", e)
		return 1
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "reaper: no command")
		return 1
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, reaperEnv+"=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if f := strings.Split(cred, ":"); len(f) == 3 {
		uid, _ := strconv.Atoi(f[0])
		gid, _ := strconv.Atoi(f[1])
		if uid != os.Geteuid() {
			c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			for _, g := range strings.Split(f[2], ",") {
				if n, err := strconv.Atoi(g); err == nil {
					c.Groups = append(c.Groups, uint32(n))
				}
			}
			cmd.SysProcAttr.Credential = c
		}
	}
	// Signals for the wrapper (SIGTERM from its own Pdeathsig when the
	// benchmark dies) go on to the command, so that Patroni stops
	// PostgreSQL.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		return 1
	}
	child := cmd.Process.Pid
	go func() {
		for s := range sigs {
			_ = syscall.Kill(child, s.(syscall.Signal))
		}
	}()
	// Reap everything; exit with the command.
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reaper:", err)
			return 1
		}
		if pid == child {
			if ws.Exited() {
				fmt.Fprintf(os.Stderr, "reaper: %s exited with status %d\n", args[0], ws.ExitStatus())
				return ws.ExitStatus()
			}
			fmt.Fprintf(os.Stderr, "reaper: %s killed by %s\n", args[0], ws.Signal())
			return 1
		}
	}
}

// childPID returns a child of ppid whose command line contains word.
func childPID(ppid int, word string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(ppid) {
			continue
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(cl, []byte(word)) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child of %d runs %s", ppid, word)
}
