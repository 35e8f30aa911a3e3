package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a child process the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	tail []string // last log lines
}

func (p *proc) note(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(p.tail, line)
	if len(p.tail) > 40 {
		p.tail = p.tail[len(p.tail)-40:]
	}
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGINT (SIGQUIT for nginx: graceful) and waits, then kills.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startProc starts a command; each output line goes to onLine.
func startProc(name string, cmd *exec.Cmd, onLine func(string)) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.note(line)
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// hub is a fake Hub process with a counting TCP proxy in front of its CDN.
type hub struct {
	*proc
	URL   string
	proxy *countProxy
}

func startHub(bin string, bigSize, rate int64, files []string, extra ...string) (*hub, error) {
	px, err := newCountProxy()
	if err != nil {
		return nil, err
	}
	hp, err1 := freePort()
	cp, err2 := freePort()
	if err1 != nil || err2 != nil {
		px.Close()
		return nil, fmt.Errorf("free ports: %v %v", err1, err2)
	}
	cdn := fmt.Sprintf("127.0.0.1:%d", cp)
	px.SetTarget(cdn)
	args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", hp), "-cdn-listen", cdn, "-cdn-url", "http://" + px.Addr()}
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
	got := make(chan [2]string, 1)
	var hubURL string
	p, err := startProc("fakehub", exec.Command(bin, args...), func(line string) {
		if v, ok := strings.CutPrefix(line, "fakehub Hub: "); ok {
			hubURL = v
		}
		if v, ok := strings.CutPrefix(line, "fakehub CDN: "); ok {
			got <- [2]string{hubURL, v}
		}
	})
	if err != nil {
		px.Close()
		return nil, err
	}
	select {
	case u := <-got:
		return &hub{proc: p, URL: u[0], proxy: px}, nil
	case <-p.done:
		px.Close()
		return nil, fmt.Errorf("fakehub exited: %s", p.logs())
	case <-time.After(5 * time.Minute):
		p.stop()
		px.Close()
		return nil, fmt.Errorf("fakehub did not start in 5m")
	}
}

func (h *hub) Close() {
	h.proc.stop()
	h.proxy.Close()
}

// countProxy is a TCP proxy that counts the bytes the upstream sends.
type countProxy struct {
	ln       net.Listener
	target   atomic.Value // string
	bytes    atomic.Int64
	lastByte atomic.Int64 // unix nanos of the last upstream byte
}

func newCountProxy() (*countProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	px := &countProxy{ln: ln}
	go px.serve()
	return px, nil
}

func (px *countProxy) Addr() string          { return px.ln.Addr().String() }
func (px *countProxy) SetTarget(addr string) { px.target.Store(addr) }
func (px *countProxy) Close()                { px.ln.Close() }
func (px *countProxy) Bytes() int64          { return px.bytes.Load() }
func (px *countProxy) LastByte() time.Time   { return time.Unix(0, px.lastByte.Load()) }

func (px *countProxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		go px.handle(c)
	}
}

func (px *countProxy) handle(c net.Conn) {
	defer c.Close()
	t, _ := px.target.Load().(string)
	u, err := net.Dial("tcp", t)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		_, _ = io.Copy(u, c)
		if tc, ok := u.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	buf := make([]byte, 256<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			px.bytes.Add(int64(n))
			px.lastByte.Store(time.Now().UnixNano())
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hfNode is an hfcache process.
type hfNode struct {
	*proc
	URL, Admin, Gossip string
	dir                string
	args               []string
	bin                string
}

func startHF(bin, upstream, dir string, extra ...string) (*hfNode, error) {
	args := append([]string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", dir, "--upstream", upstream,
		"--cache-size", "60GiB", "--log-format", "json", "--log-level", "info",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HF_TOKEN=", "HFCACHE_CLUSTER_SECRET=")
	ready := make(chan [3]string, 1)
	logf, _ := os.Create(dir + ".log")
	p, err := startProc("hfcache", cmd, func(line string) {
		if logf != nil {
			fmt.Fprintln(logf, line)
		}
		if !strings.Contains(line, "hfcache serving") {
			return
		}
		var rec struct {
			Msg    string `json:"msg"`
			Client string `json:"client_addr"`
			Admin  string `json:"admin_addr"`
			Gossip string `json:"gossip_addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "hfcache serving" {
			select {
			case ready <- [3]string{rec.Client, rec.Admin, rec.Gossip}:
			default:
			}
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case a := <-ready:
		return &hfNode{proc: p, URL: "http://" + a[0], Admin: "http://" + a[1], Gossip: a[2], dir: dir, args: extra, bin: bin}, nil
	case <-p.done:
		return nil, fmt.Errorf("hfcache exited before serving: %s", p.logs())
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, fmt.Errorf("hfcache did not serve within 60s: %s", p.logs())
	}
}

// nginxProc is nginx as a proxy_cache in front of one or more fake Hubs.
type nginxProc struct {
	*proc
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
    listen 127.0.0.1:{{port}} reuseport;
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startNginx(bin, dir string, hubs []string) (*nginxProc, error) {
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	var servers strings.Builder
	var urls []string
	for i, h := range hubs {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := strings.NewReplacer("{{dir}}", dir, "{{i}}", strconv.Itoa(i), "{{port}}", strconv.Itoa(port), "{{hub}}", h).Replace(nginxServer)
		servers.WriteString(s)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", port))
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
	p, err := startProc("nginx", cmd, nil)
	if err != nil {
		return nil, err
	}
	n := &nginxProc{proc: p, URLs: urls}
	deadline := time.Now().Add(20 * time.Second)
	for _, u := range urls {
		for {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "http://"), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return nil, fmt.Errorf("nginx exited: %s %s", p.logs(), log)
			default:
			}
			if time.Now().After(deadline) {
				p.stop()
				return nil, fmt.Errorf("nginx did not listen on %s within 20s", u)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	return n, nil
}

// stop: SIGQUIT is nginx's graceful shutdown.
func (n *nginxProc) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// pids is the nginx master and its workers.
func (n *nginxProc) pids() []int {
	out := []int{n.pid()}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == n.pid() {
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
