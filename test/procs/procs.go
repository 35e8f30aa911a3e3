// Package procs starts and talks to the processes the end-to-end tests, the
// bench (test/bench) and the demo (test/demo) run: hfcache, the fake Hub and
// nginx. It captures a child's output line by line into a log that is safe
// to read while the child writes, waits for a readiness line with the
// child's exit and a deadline in view, stops a child with a signal and a
// timeout before SIGKILL, hands out free loopback addresses, polls a
// condition, and reads hfcache's admin endpoints (/metrics, cluster
// members). It knows nothing of *testing.T: callers wrap it.
package procs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options say how Start captures a child's output and when it is ready.
type Options struct {
	// Name labels the process in errors and echoed lines.
	Name string
	// StderrOnly captures stderr alone (stdout goes to the null device);
	// otherwise both streams go to the log.
	StderrOnly bool
	// Keep is how many of the last lines the log keeps; 0 keeps them all.
	Keep int
	// Echo, if not nil, gets every line as "[Name] line\n".
	Echo io.Writer
	// OnLine, if not nil, is called with every line, in order, on the
	// goroutine that reads the output.
	OnLine func(line string)
	// Ready, if not nil, picks the line that says the process is ready
	// (after OnLine saw it); WaitReady returns the first such line.
	Ready func(line string) bool
	// KillWithParent has the kernel SIGKILL the child when this process dies
	// (Pdeathsig).
	KillWithParent bool
}

// Proc is a started child process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Log is the child's output as it arrives.
	Log *Log

	done  chan struct{}
	ready chan string
}

// ErrExited is WaitReady's error when the process ended before it was ready.
var ErrExited = errors.New("process exited")

// maxLine is the longest output line read; a longer one ends the log (the
// rest of the output is drained and dropped).
const maxLine = 1 << 20

// Start starts cmd with its output captured as opt says. Done is closed
// once the process has exited and all of its output has been read.
func Start(cmd *exec.Cmd, opt Options) (*Proc, error) {
	p := &Proc{Name: opt.Name, Cmd: cmd, Log: &Log{keep: opt.Keep}, done: make(chan struct{}), ready: make(chan string, 1)}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if !opt.StderrOnly {
		cmd.Stdout = pw
	}
	if opt.KillWithParent {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", opt.Name, err)
	}
	var lines sync.WaitGroup
	lines.Add(1)
	go func() {
		defer lines.Done()
		readyOK := opt.Ready == nil
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, maxLine), maxLine)
		for sc.Scan() {
			line := sc.Text()
			p.Log.add(line)
			if opt.Echo != nil {
				fmt.Fprintf(opt.Echo, "[%s] %s\n", opt.Name, line)
			}
			if opt.OnLine != nil {
				opt.OnLine(line)
			}
			if !readyOK && opt.Ready(line) {
				readyOK = true
				p.ready <- line
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		lines.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited and its output is read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// WaitReady waits for the first line Options.Ready picked and returns it;
// it fails with ErrExited when the process ends first, or with ctx's error.
func (p *Proc) WaitReady(ctx context.Context) (string, error) {
	select {
	case line := <-p.ready:
		p.ready <- line // a second call gets it too
		return line, nil
	case <-p.done:
		select { // the ready line may have come just before the exit
		case line := <-p.ready:
			p.ready <- line
			return line, nil
		default:
		}
		return "", ErrExited
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Stop sends sig and waits for the exit; after timeout it sends SIGKILL and
// waits again. It reports whether it had to kill. A process that has
// already exited is left alone.
func (p *Proc) Stop(sig os.Signal, timeout time.Duration) (killed bool) {
	if p.Exited() {
		return false
	}
	_ = p.Cmd.Process.Signal(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
		_ = p.Cmd.Process.Kill()
		<-p.done
		return true
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Log is a process's output lines; it is safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	keep  int // 0: all
	lines []string
}

func (l *Log) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if l.keep > 0 && len(l.lines) > l.keep {
		l.lines = l.lines[len(l.lines)-l.keep:]
	}
}

// String is the lines kept, each ending in a newline.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.lines {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// Lines is the lines kept, joined by newlines (no newline at the end).
func (l *Log) Lines() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Tail is the last max bytes of logs, marked with "…" when cut.
func Tail(logs string, max int) string {
	if len(logs) > max {
		return "…" + logs[len(logs)-max:]
	}
	return logs
}

// Serving is the addresses in hfcache's "hfcache serving" log record.
type Serving struct {
	Client, Admin, Gossip string // host:port
}

// ParseServing reads line as hfcache's JSON "hfcache serving" record.
func ParseServing(line string) (Serving, bool) {
	if !strings.Contains(line, "hfcache serving") {
		return Serving{}, false
	}
	var rec struct {
		Msg    string `json:"msg"`
		Client string `json:"client_addr"`
		Admin  string `json:"admin_addr"`
		Gossip string `json:"gossip_addr"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "hfcache serving" {
		return Serving{}, false
	}
	return Serving{Client: rec.Client, Admin: rec.Admin, Gossip: rec.Gossip}, true
}

// IsServing reports whether line is hfcache's "hfcache serving" record (an
// Options.Ready for hfcache serve with --log-format json).
func IsServing(line string) bool {
	_, ok := ParseServing(line)
	return ok
}

// FreeAddr reserves a loopback address for a process to bind later: one
// whose TCP and UDP ports are free now (gossip binds UDP on the TCP port)
// and that no other call in this process returned.
//
// The port comes from outside the kernel's ephemeral range
// (net.ipv4.ip_local_port_range) when there is room below or above it. A
// test that restarts a node on its old address (Raft's address must not
// change) then cannot find it taken by a listener another node bound to
// port 0 meanwhile: that happened in TestReplicatedConfiguration, where a
// restarted node's admin port got the stopped node's Raft port.
func FreeAddr() (string, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	lo, hi, ok := nonEphemeralPorts()
	for range 200 {
		var addr string
		if ok {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return "", err
			}
			addr = l.Addr().String()
			l.Close()
		}
		// The kernel may hand a just-closed port out again; an address given
		// to one process must not be given to the next.
		if handedOut.addrs[addr] || !bindable(addr) {
			continue
		}
		handedOut.addrs[addr] = true
		return addr, nil
	}
	return "", errors.New("no free TCP+UDP port on 127.0.0.1 after 200 tries")
}

// bindable reports whether addr's TCP and UDP ports can both be bound now.
func bindable(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// nonEphemeralPorts is a range [lo, hi) of ports the kernel never picks
// for a bind to port 0: below its ephemeral range, or above it.
func nonEphemeralPorts() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	first, err1 := strconv.Atoi(f[0])
	last, err2 := strconv.Atoi(f[1])
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, false
	case first >= 12000: // Linux's default is 32768-60999
		return 10000, first, true
	case last <= 63000:
		return last + 1, 65536, true
	}
	return 0, 0, false
}

// handedOut is every address FreeAddr returned in this process.
var handedOut = struct {
	mu    sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// Poll calls cond every interval until it holds, and returns nil; once ctx
// ends it tries cond one last time and returns ctx's error.
func Poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// HTTPOK reports whether GET url answers 200.
func HTTPOK(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// MetricSum is the sum of a Prometheus counter's samples (all label sets)
// in the text exposition at url (an hfcache admin /metrics).
func MetricSum(c *http.Client, url, name string) (float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, maxLine), maxLine)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(rest)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// AliveMembers is the number of alive members in an hfcache node's view of
// the cluster (GET admin/v1/cluster/members), -1 when it cannot tell.
func AliveMembers(c *http.Client, admin string) int {
	resp, err := c.Get(admin + "/v1/cluster/members")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var view struct {
		Members []struct {
			State string `json:"state"`
		} `json:"members"`
	}
	if json.NewDecoder(resp.Body).Decode(&view) != nil {
		return -1
	}
	n := 0
	for _, m := range view.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n
}
