package raftstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// lockedBuffer is a log sink the accept goroutine writes and the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// acceptAll runs Accept until it fails, delivering admitted connections;
// done receives Accept's final error.
func acceptAll(l *streamLayer) (conns chan net.Conn, done chan error) {
	conns, done = make(chan net.Conn, 8), make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			conns <- c
		}
	}()
	return conns, done
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func TestStreamLayerRefusesNonMembers(t *testing.T) {
	var buf lockedBuffer
	var asked atomic.Value
	allow := allowIPs("10.0.0.7", "192.168.1.2") // not 127.0.0.1
	l := newStreamLayer(listenLoopback(t), nil, func(a net.Addr) bool {
		asked.Store(a.String())
		return allow(a)
	}, slog.New(slog.NewTextHandler(&buf, nil)))
	conns, done := acceptAll(l)

	// Refused twice from the same IP: both closed before a byte is read,
	// one log line.
	for i := range 2 {
		c, err := l.Dial(raft.ServerAddress(l.Addr().String()), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(waitBound))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: read %d, %v; want EOF", i, n, err)
		}
		if got, _ := asked.Load().(string); got != c.LocalAddr().String() {
			t.Fatalf("AllowPeer saw %q, want the client's address %s", got, c.LocalAddr())
		}
		_ = c.Close()
	}
	select {
	case c := <-conns:
		t.Fatalf("refused connection handed to raft: %v", c.RemoteAddr())
	default:
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	log := buf.String()
	if n := strings.Count(log, "raft connection refused"); n != 1 || !strings.Contains(log, "remote=127.0.0.1:") {
		t.Fatalf("want one refusal line naming the remote, got %d:\n%s", n, log)
	}
}

func TestStreamLayerAdmitsMembers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow func(net.Addr) bool
	}{
		{"listed", allowIPs("10.0.0.7", "127.0.0.1")},
		{"nil allows all", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newStreamLayer(listenLoopback(t), nil, tc.allow, slog.New(slog.DiscardHandler))
			conns, done := acceptAll(l)
			c, err := l.Dial(raft.ServerAddress(l.Addr().String()), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitBound))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			var srv net.Conn
			select {
			case srv = <-conns:
			case err := <-done:
				t.Fatalf("Accept: %v", err)
			case <-time.After(waitBound):
				t.Fatal("admitted connection not accepted")
			}
			defer srv.Close()
			_ = srv.SetDeadline(time.Now().Add(waitBound))
			got := make([]byte, 4)
			if _, err := io.ReadFull(srv, got); err != nil || string(got) != "ping" {
				t.Fatalf("server read %q, %v", got, err)
			}
			if _, err := srv.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "pong" {
				t.Fatalf("client read %q, %v", got, err)
			}
			_ = l.Close()
			<-done
		})
	}
}

func TestStreamLayerAddr(t *testing.T) {
	ln := listenLoopback(t)
	l := newStreamLayer(ln, nil, nil, slog.New(slog.DiscardHandler))
	if l.Addr().String() != ln.Addr().String() || l.checkAdvertisable() != nil {
		t.Fatalf("Addr() = %v (listener %v), %v", l.Addr(), ln.Addr(), l.checkAdvertisable())
	}
	adv := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 7947}
	if l = newStreamLayer(ln, adv, nil, slog.New(slog.DiscardHandler)); l.Addr().String() != "10.1.2.3:7947" || l.checkAdvertisable() != nil {
		t.Fatalf("advertised Addr() = %v, %v", l.Addr(), l.checkAdvertisable())
	}
	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	if err := newStreamLayer(wild, nil, nil, slog.New(slog.DiscardHandler)).checkAdvertisable(); err == nil {
		t.Fatal("unspecified bind address accepted as advertisable")
	}

	// Open keeps advertising AdvertiseAddr, not the bound address.
	cfg := DefaultConfig()
	cfg.Dir, cfg.NodeID, cfg.BindAddr, cfg.AdvertiseAddr = t.TempDir(), "adv", "127.0.0.1:0", "10.1.2.3:7947"
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if s.Addr() != "10.1.2.3:7947" {
		t.Fatalf("Store.Addr() = %q", s.Addr())
	}
}

func TestRefusalLogRateLimit(t *testing.T) {
	l := newStreamLayer(nil, nil, nil, slog.New(slog.DiscardHandler))
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		ip   string
		at   time.Duration
		want bool
	}{
		{"10.0.0.1", 0, true},
		{"10.0.0.1", 30 * time.Second, false},
		{"10.0.0.2", 30 * time.Second, true},
		{"10.0.0.1", 59 * time.Second, false},
		{"10.0.0.1", time.Minute, true},
		{"10.0.0.1", time.Minute + time.Second, false},
	}
	for i, s := range steps {
		if got := l.mayLogLocked(s.ip, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%s at %v): %v, want %v", i, s.ip, s.at, got, s.want)
		}
	}
	// Memory is bounded: a flood of fresh addresses fills the table, then
	// new ones go unlogged until old entries expire.
	l = newStreamLayer(nil, nil, nil, slog.New(slog.DiscardHandler))
	for i := range refusedLogKeep {
		if !l.mayLogLocked(fmt.Sprintf("10.1.%d.%d", i/256, i%256), t0) {
			t.Fatalf("address %d not logged", i)
		}
	}
	if l.mayLogLocked("10.2.0.1", t0.Add(time.Second)) || len(l.refused) != refusedLogKeep {
		t.Fatalf("table over its bound: %d", len(l.refused))
	}
	if !l.mayLogLocked("10.2.0.1", t0.Add(time.Minute)) || len(l.refused) != 1 {
		t.Fatalf("expired entries not pruned: %d", len(l.refused))
	}
}

// TestNonMemberCannotReplicate: a node whose transport refuses the leader
// is in the configuration but receives nothing; once it admits the leader
// (the leader became a gossip member, say) it catches up.
func TestNonMemberCannotReplicate(t *testing.T) {
	n1 := openNode(t, "n1", nil)
	if err := n1.s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	var admit atomic.Bool
	loopback := allowIPs("127.0.0.1")
	n2 := &testNode{id: "n2", dir: t.TempDir(), addr: "127.0.0.1:0", clock: newFakeClock(),
		allow: func(a net.Addr) bool { return admit.Load() && loopback(a) }}
	n2.open(t)
	nodes := []*testNode{n1, n2}
	// One voter: n2 joins as a non-voter, so n1 keeps its quorum.
	reconcile(t, nodes, []Member{n1.member(StateAlive), n2.member(StateAlive)}, ReconcileConfig{Voters: 1})
	if got := servers(n1); got["n2"] != "nonvoter" {
		t.Fatalf("n2 not added: %v", got)
	}
	idx, _ := n1.s.fsm.index()

	time.Sleep(300 * time.Millisecond) // many heartbeats at fastRaft's timings
	if got, _ := n2.s.fsm.index(); got != 0 || len(n2.s.Snapshot().Remotes) != 0 {
		t.Fatalf("refusing node replicated up to %d: %+v", got, n2.s.Snapshot())
	}
	if addr, _ := n2.s.Leader(); addr != "" {
		t.Fatalf("refusing node heard from leader %s", addr)
	}

	admit.Store(true)
	if err := n2.s.WaitIndex(ctxFor(t), idx); err != nil {
		t.Fatalf("admitted node catching up: %v", err)
	}
	if _, ok := n2.s.Snapshot().Remotes["default"]; !ok {
		t.Fatalf("admitted node missing the seed: %+v", n2.s.Snapshot())
	}
}
