package membership

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestMain fails the package if a goroutine of this package or of
// memberlist outlives the tests (every test shuts its nodes down).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func waitNoLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		leaked := ownedGoroutines()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownedGoroutines lists the goroutines running code of memberlist or of
// this package's types (the join loop, cut connections).
func ownedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/hashicorp/memberlist.") ||
			strings.Contains(g, "hfcache/node/membership.(*") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// fastGossip tightens memberlist's timings for loopback tests (probes a
// little slower than gossip, so a busy -race run is not taken for failures).
func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 10 * time.Millisecond
	c.SuspicionMult = 2
	c.PushPullInterval = 200 * time.Millisecond
	c.TCPTimeout = time.Second
}

// logSink is an slog handler that keeps every record as one line of text.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) handler() slog.Handler { return &sinkHandler{sink: s} }

func (s *logSink) add(line string) {
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
}

// count is the number of lines containing every one of subs.
func (s *logSink) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
next:
	for _, l := range s.lines {
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				continue next
			}
		}
		n++
	}
	return n
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

type sinkHandler struct {
	sink  *logSink
	attrs string
}

func (h *sinkHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *sinkHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s", r.Level, r.Message, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.sink.add(b.String())
	return nil
}

func (h *sinkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	return &sinkHandler{sink: h.sink, attrs: b.String()}
}

func (h *sinkHandler) WithGroup(string) slog.Handler { return h }

const testSecret = "test-secret-d41d8cd9"

// testConfig is a node on 127.0.0.1 with a free port and fast gossip.
func testConfig(name string, sink *logSink) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Secret = testSecret
	cfg.Meta = testMeta(name)
	cfg.JoinRetryMin = 20 * time.Millisecond
	cfg.JoinRetryMax = 200 * time.Millisecond
	cfg.Tune = fastGossip
	cfg.Logger = slog.New(sink.handler())
	return cfg
}

func testMeta(name string) Meta {
	return Meta{
		ClientURL: "http://" + name + ".test:8080",
		AdminURL:  "http://" + name + ".test:8081",
		Version:   "test",
	}
}

// testNode starts a node; mod adjusts its config first. The node shuts
// down when the test ends; its log is printed if the test failed.
func testNode(t *testing.T, name string, mod func(*Config)) (*Membership, *logSink) {
	t.Helper()
	sink := &logSink{}
	cfg := testConfig(name, sink)
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	// A node restarting on its old port may find it briefly taken (by an
	// outgoing connection of a parallel test): retry for a while.
	deadline := time.Now().Add(3 * time.Second)
	for err := m.Start(); err != nil; err = m.Start() {
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("Start(%s): %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		if err := m.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s saw %+v; its log:\n%s", name, m.Members(), sink)
		}
	})
	return m, sink
}

// joining makes a node join the given seeds.
func joining(seeds ...string) func(*Config) {
	return func(c *Config) { c.Join = seeds }
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// member is name in m's view.
func member(m *Membership, name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// stateOf is name's state in m's view, "" if absent.
func stateOf(m *Membership, name string) State {
	mem, _ := member(m, name)
	return mem.State
}

// allAlive says whether every one of views holds exactly names (sorted),
// all alive.
func allAlive(views []*Membership, names ...string) bool {
	for _, v := range views {
		got := v.Members()
		if len(got) != len(names) {
			return false
		}
		for i, mem := range got {
			if mem.Name != names[i] || mem.State != StateAlive {
				return false
			}
		}
	}
	return true
}

// drain empties a Changes channel.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
