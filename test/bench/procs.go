package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hfcache/hfcache/test/procs"
)

// stopTimeout is how long a child may take to stop on its signal before
// it is killed.
const stopTimeout = 20 * time.Second

// logLines is how many of a child's last log lines the bench keeps.
const logLines = 40

// startProc starts a command; each output line goes to onLine, and the first
// line ready picks is the one WaitReady returns.
func startProc(name string, cmd *exec.Cmd, onLine func(string), ready func(string) bool) (*procs.Proc, error) {
	return procs.Start(cmd, procs.Options{Name: name, Keep: logLines, OnLine: onLine, Ready: ready, KillWithParent: true})
}

// hub is a fake Hub process. Its -stats-listen endpoint says how many body
// bytes its CDN has sent and when the last of them went: the upstream bytes
// of cold fills, and when a fill ended. (Earlier a counting TCP proxy in
// this process sat in front of the CDN; it copied every upstream byte
// through user space on the benchmark's own cores, and put one more hop on
// every cold path.)
type hub struct {
	*procs.Proc
	URL   string
	stats string // GET: cdnStats
}

func startHub(bin string, bigSize, rate int64, files []string, extra ...string) (*hub, error) {
	hubAddr, err1 := procs.FreeAddr()
	cdn, err2 := procs.FreeAddr()
	stats, err3 := procs.FreeAddr()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("free ports: %w", err)
	}
	args := []string{"-listen", hubAddr, "-cdn-listen", cdn, "-cdn-url", "http://" + cdn, "-stats-listen", stats}
	if bigSize > 0 {
		args = append(args, "-big", strconv.FormatInt(bigSize, 10))
	}
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatInt(rate, 10))
	}
	for _, f := range files {
		args = append(args, "-file", f)
	}
	args = append(args, extra...)
	var hubURL, statsURL string // set before the ready line, read after it
	p, err := startProc("fakehub", exec.Command(bin, args...), func(line string) {
		if v, ok := strings.CutPrefix(line, "fakehub Hub: "); ok {
			hubURL = v
		}
		if v, ok := strings.CutPrefix(line, "fakehub stats: "); ok {
			statsURL = v
		}
	}, func(line string) bool { return strings.HasPrefix(line, "fakehub CDN: ") })
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch _, err := p.WaitReady(ctx); {
	case err == nil:
		return &hub{Proc: p, URL: hubURL, stats: statsURL}, nil
	case errors.Is(err, procs.ErrExited):
		return nil, fmt.Errorf("fakehub exited: %s", p.Log.Lines())
	default:
		p.Stop(os.Interrupt, stopTimeout)
		return nil, fmt.Errorf("fakehub did not start in 5m")
	}
}

func (h *hub) Close() { h.Stop(os.Interrupt, stopTimeout) }

// cdn is the body bytes the fake CDN has sent so far, and when it sent the
// last of them.
func (h *hub) cdn() (int64, time.Time, error) {
	resp, err := http.Get(h.stats)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer resp.Body.Close()
	var st struct {
		BodyBytes        int64 `json:"body_bytes"`
		LastByteUnixNano int64 `json:"last_byte_unix_nano"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, time.Time{}, fmt.Errorf("fakehub stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, time.Time{}, fmt.Errorf("fakehub stats: %w", err)
	}
	var last time.Time
	if st.LastByteUnixNano != 0 {
		last = time.Unix(0, st.LastByteUnixNano)
	}
	return st.BodyBytes, last, nil
}

// cdnBytes is cdn's byte count.
func (h *hub) cdnBytes() (int64, error) {
	n, _, err := h.cdn()
	return n, err
}

// hfNode is an hfcache process.
type hfNode struct {
	*procs.Proc
	URL, Admin, Gossip string
	dir                string
	args               []string
	bin                string
	logf               *os.File // DIR.log, closed by stop
}

// stop sends SIGINT and waits, then kills, and closes the log file.
func (n *hfNode) stop() {
	n.Stop(os.Interrupt, stopTimeout)
	n.logf.Close()
}

func startHF(bin, upstream, dir string, extra ...string) (*hfNode, error) {
	args := append([]string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", dir, "--upstream", upstream,
		"--cache-size", "60GiB", "--log-format", "json", "--log-level", "info",
		"--request-log=false", // as nginx's access_log off
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HF_TOKEN=", "HFCACHE_CLUSTER_SECRET=")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	p, err := startProc("hfcache", cmd, func(line string) {
		fmt.Fprintln(logf, line)
	}, procs.IsServing)
	if err != nil {
		logf.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	line, err := p.WaitReady(ctx)
	switch {
	case err == nil:
		a, _ := procs.ParseServing(line)
		return &hfNode{Proc: p, URL: "http://" + a.Client, Admin: "http://" + a.Admin, Gossip: a.Gossip, dir: dir, args: extra, bin: bin, logf: logf}, nil
	case errors.Is(err, procs.ErrExited):
		logf.Close()
		return nil, fmt.Errorf("hfcache exited before serving: %s", p.Log.Lines())
	default:
		p.Stop(os.Interrupt, stopTimeout)
		logf.Close()
		return nil, fmt.Errorf("hfcache did not serve within 60s: %s", p.Log.Lines())
	}
}

// nginxProc is nginx as a proxy_cache in front of one or more fake Hubs.
type nginxProc struct {
	*procs.Proc
	URLs []string // one per upstream hub, same order
}

const nginxConf = `
{{user}}
worker_processes auto;
daemon off;
master_process on;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {{dir}}/tmp/body;
  proxy_temp_path {{dir}}/tmp/proxy;
  fastcgi_temp_path {{dir}}/tmp/fastcgi;
  uwsgi_temp_path {{dir}}/tmp/uwsgi;
  scgi_temp_path {{dir}}/tmp/scgi;
  proxy_buffering on;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_cache_key $request_uri;
  proxy_cache_valid 200 206 1d;
  proxy_cache_lock on;
  proxy_cache_lock_timeout 10m;
  proxy_cache_lock_age 10m;
  proxy_read_timeout 10m;
  proxy_max_temp_file_size 0;
{{servers}}
}
`

const nginxServer = `
  proxy_cache_path {{dir}}/cache{{i}} levels=1:2 keys_zone=hub{{i}}:16m max_size=100g inactive=1d use_temp_path=off;
  server {
    listen {{addr}} reuseport;
    location / {
      proxy_pass {{hub}};
      proxy_cache hub{{i}};
      proxy_intercept_errors on;
      error_page 301 302 307 = @handle_redirect;
      add_header X-Cache-Status $upstream_cache_status always;
    }
    location @handle_redirect {
      set $saved_redirect_location $upstream_http_location;
      proxy_pass $saved_redirect_location;
      proxy_cache hub{{i}};
      add_header X-Cache-Status $upstream_cache_status always;
      # The Hub redirects regular files relatively (/api/resolve-cache/...).
      if ($saved_redirect_location ~ "^/") {
        set $saved_redirect_location "{{hub}}$saved_redirect_location";
      }
      proxy_intercept_errors on;
      recursive_error_pages on;
      error_page 301 302 307 = @handle_redirect;
    }
  }
`

func startNginx(bin, dir string, hubs []string) (*nginxProc, error) {
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	var servers strings.Builder
	var urls []string
	for i, h := range hubs {
		addr, err := procs.FreeAddr()
		if err != nil {
			return nil, err
		}
		s := strings.NewReplacer("{{dir}}", dir, "{{i}}", strconv.Itoa(i), "{{addr}}", addr, "{{hub}}", h).Replace(nginxServer)
		servers.WriteString(s)
		urls = append(urls, "http://"+addr)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{servers}}", servers.String(), "{{user}}", user).Replace(nginxConf)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", cf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	p, err := startProc("nginx", cmd, nil, nil)
	if err != nil {
		return nil, err
	}
	n := &nginxProc{Proc: p, URLs: urls}
	deadline := time.Now().Add(20 * time.Second)
	for _, u := range urls {
		for {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "http://"), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p.Exited() {
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return nil, fmt.Errorf("nginx exited: %s %s", p.Log.Lines(), log)
			}
			if time.Now().After(deadline) {
				p.Stop(os.Interrupt, stopTimeout)
				return nil, fmt.Errorf("nginx did not listen on %s within 20s", u)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	return n, nil
}

// stop: SIGTERM is nginx's fast shutdown. The graceful one (SIGQUIT)
// waits for every connection that has not finished a request: a
// connection the bench's client dialed but never used held it until
// nginx's 60 s header timeout, so a quick run sometimes took a minute
// longer.
func (n *nginxProc) stop() { n.Stop(syscall.SIGTERM, stopTimeout) }

// pids is the nginx master and its workers.
func (n *nginxProc) pids() []int {
	out := []int{n.Pid()}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == n.Pid() {
			out = append(out, pid)
		}
	}
	return out
}

type procStat struct {
	ppid  int
	ticks int64 // utime + stime
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bad stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] = state (field 3)
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("bad stat")
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{ppid: ppid, ticks: ut + st}, nil
}

// cpuSeconds sums utime+stime of pids (USER_HZ = 100 on Linux).
func cpuSeconds(pids []int) float64 {
	var t int64
	for _, p := range pids {
		if st, err := readStat(p); err == nil {
			t += st.ticks
		}
	}
	return float64(t) / 100
}

// statusKB reads a "VmHWM:"-style field of /proc/PID/status in KiB.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
