package membership

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

const converge = 10 * time.Second // generous: -race and parallel tests

func TestThreeNodesJoin(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil)
	b, _ := testNode(t, "b", joining(a.GossipAddr()))
	c, _ := testNode(t, "c", joining(b.GossipAddr())) // joins through b
	nodes := []*Membership{a, b, c}
	waitFor(t, converge, "3 alive members everywhere", func() bool { return allAlive(nodes, "a", "b", "c") })

	addrs := map[string]string{}
	for _, n := range nodes {
		addrs[n.LocalName()] = n.GossipAddr()
	}
	for _, n := range nodes {
		for _, mem := range n.Members() {
			if mem.Meta != testMeta(mem.Name) {
				t.Errorf("%s sees %s with meta %+v, want %+v", n.LocalName(), mem.Name, mem.Meta, testMeta(mem.Name))
			}
			if mem.Addr != addrs[mem.Name] {
				t.Errorf("%s sees %s at %q, want %q", n.LocalName(), mem.Name, mem.Addr, addrs[mem.Name])
			}
			if mem.Self != (mem.Name == n.LocalName()) {
				t.Errorf("%s sees %s with Self=%v", n.LocalName(), mem.Name, mem.Self)
			}
		}
	}
}

func TestGossipAddrIsBoundPort(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil)
	host, port, err := net.SplitHostPort(a.GossipAddr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("GossipAddr() = %q (%v), want 127.0.0.1 and the bound port", a.GossipAddr(), err)
	}
	// Both protocols listen there.
	conn, err := net.DialTimeout("tcp", a.GossipAddr(), time.Second)
	if err != nil {
		t.Fatalf("no TCP listener at GossipAddr: %v", err)
	}
	conn.Close()
}

func TestJoinRetriesUntilSeedIsUp(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the late seed
	if err != nil {
		t.Fatal(err)
	}
	seed := ln.Addr().String()
	ln.Close()

	b, bLog := testNode(t, "b", joining(seed))
	waitFor(t, converge, "b to retry the absent seed", func() bool {
		return bLog.count("cannot join the cluster yet") >= 2
	})
	if got := b.Members(); len(got) != 1 || got[0].Name != "b" {
		t.Fatalf("b alone sees %+v", got)
	}

	a, _ := testNode(t, "a", func(c *Config) { c.BindAddr = seed })
	waitFor(t, converge, "b to join the late seed", func() bool { return allAlive([]*Membership{a, b}, "a", "b") })
	waitFor(t, converge, "b's join loop to report success", func() bool { return bLog.count("joined the cluster") == 1 })
}

func TestLeaveIsLeft(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil)
	b, _ := testNode(t, "b", joining(a.GossipAddr()))
	c, _ := testNode(t, "c", joining(a.GossipAddr()))
	waitFor(t, converge, "3 alive members", func() bool { return allAlive([]*Membership{a, b, c}, "a", "b", "c") })

	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, n := range []*Membership{a, b} {
		waitFor(t, converge, n.LocalName()+" to see c left", func() bool { return stateOf(n, "c") == StateLeft })
		if mem, _ := member(n, "c"); mem.Meta != testMeta("c") {
			t.Errorf("%s keeps c's meta as %+v", n.LocalName(), mem.Meta)
		}
	}
	if got := stateOf(c, "c"); got != StateLeft {
		t.Errorf("c sees itself %q after Leave, want left", got)
	}
	// Leave shut c down: its join loop and gossip are stopped, and again is a no-op.
	if err := c.Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := c.UpdateMeta(testMeta("c")); !errors.Is(err, ErrStopped) {
		t.Errorf("UpdateMeta after Leave = %v, want ErrStopped", err)
	}
}

func TestCrashIsSuspectThenDeadAndRestartIsAlive(t *testing.T) {
	t.Parallel()
	// A long suspicion (10 × 100ms) so the test sees it before the verdict.
	slowVerdict := func(cfg *Config) {
		cfg.Tune = func(c *memberlist.Config) {
			fastGossip(c)
			c.SuspicionMult = 10
		}
	}
	a, _ := testNode(t, "a", slowVerdict)
	b, _ := testNode(t, "b", func(cfg *Config) { slowVerdict(cfg); cfg.Join = []string{a.GossipAddr()} })
	c, _ := testNode(t, "c", func(cfg *Config) { slowVerdict(cfg); cfg.Join = []string{a.GossipAddr()} })
	waitFor(t, converge, "3 alive members", func() bool { return allAlive([]*Membership{a, b, c}, "a", "b", "c") })

	cAddr := c.GossipAddr()
	if err := c.Shutdown(); err != nil { // a crash: no goodbye
		t.Fatal(err)
	}
	for _, n := range []*Membership{a, b} {
		waitFor(t, converge, n.LocalName()+" to suspect c", func() bool { return stateOf(n, "c") == StateSuspect })
	}
	for _, n := range []*Membership{a, b} {
		waitFor(t, converge, n.LocalName()+" to declare c dead", func() bool { return stateOf(n, "c") == StateDead })
	}
	if mem, _ := member(a, "c"); mem.Meta != testMeta("c") || mem.Addr != cAddr {
		t.Errorf("a keeps dead c as %+v", mem)
	}

	// c comes back with the same name (and gossip address, as a restarted
	// server would).
	c2, _ := testNode(t, "c", func(cfg *Config) {
		slowVerdict(cfg)
		cfg.BindAddr = cAddr
		cfg.Join = []string{b.GossipAddr()}
	})
	waitFor(t, converge, "c alive again everywhere", func() bool { return allAlive([]*Membership{a, b, c2}, "a", "b", "c") })
}

func TestSecretMismatchCannotJoin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, secret string }{
		{"other secret", "another-secret-0123"},
		{"no secret", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, aLog := testNode(t, "a", nil)
			d, dLog := testNode(t, "d", func(c *Config) {
				c.Secret = tc.secret
				c.Join = []string{a.GossipAddr()}
			})
			waitFor(t, converge, "d to log the refused join", func() bool {
				return dLog.count("cannot join the cluster", "cluster secret mismatch?") >= 2 // and it keeps trying
			})
			waitFor(t, converge, "a to log the undecryptable join", func() bool {
				return aLog.count("hint=cluster secret mismatch?") >= 1
			})
			if got := d.Members(); len(got) != 1 || got[0].Name != "d" {
				t.Errorf("d sees %+v, want itself alone", got)
			}
			if _, ok := member(a, "d"); ok {
				t.Errorf("a sees d: %+v", a.Members())
			}
			for name, sink := range map[string]*logSink{"a": aLog, "d": dLog} {
				for _, secret := range []string{testSecret, tc.secret} {
					if secret != "" && sink.count(secret) > 0 {
						t.Errorf("%s logged a secret", name)
					}
				}
			}
		})
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil)
	b, _ := testNode(t, "b", joining(a.GossipAddr()))
	waitFor(t, converge, "2 alive members", func() bool { return allAlive([]*Membership{a, b}, "a", "b") })

	drain(b.Changes())
	meta := Meta{ClientURL: "http://10.1.2.3:9090", AdminURL: "https://10.1.2.3:9091", RaftAddr: "10.1.2.3:7947", Version: "v2"}
	if err := a.UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Membership{a, b} {
		waitFor(t, converge, n.LocalName()+" to see a's new meta", func() bool {
			mem, _ := member(n, "a")
			return mem.Meta == meta && mem.State == StateAlive
		})
	}
	select {
	case <-b.Changes():
	case <-time.After(converge):
		t.Fatal("no change signalled for a's new meta")
	}

	tooBig := meta
	tooBig.Version = strings.Repeat("v", memberlist.MetaMaxSize)
	if err := a.UpdateMeta(tooBig); err == nil {
		t.Error("UpdateMeta accepted meta over memberlist.MetaMaxSize")
	}
	if mem, _ := member(a, "a"); mem.Meta != meta {
		t.Errorf("a's meta after a refused update: %+v", mem.Meta)
	}
}

func TestChangesOnJoinAndLeave(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil)
	changes := a.Changes()
	drain(changes)
	// waitChange waits for signals until cond holds: one signal may stand
	// for several changes, and a change may precede the one awaited.
	waitChange := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(converge)
		for !cond() {
			select {
			case <-changes:
			case <-deadline:
				t.Fatalf("no change signalled for %s; a sees %+v", what, a.Members())
			}
		}
	}

	b, _ := testNode(t, "b", joining(a.GossipAddr()))
	waitChange("b joining", func() bool { return stateOf(a, "b") == StateAlive })
	drain(changes)
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitChange("b leaving", func() bool { return stateOf(a, "b") == StateLeft })
}

func TestShutdownCutsAStuckJoin(t *testing.T) {
	t.Parallel()
	// A "seed" that accepts connections and never answers: memberlist would
	// wait TCPTimeout for its push/pull reply.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	sink := &logSink{}
	cfg := testConfig("a", sink)
	cfg.Join = []string{ln.Addr().String()}
	cfg.Tune = func(c *memberlist.Config) {
		fastGossip(c)
		c.TCPTimeout = time.Minute
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	select {
	case conn = <-accepted:
		defer conn.Close()
	case <-time.After(converge):
		t.Fatal("the join never reached the seed")
	}
	start := time.Now()
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a join stuck on a mute seed", d)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	sink := &logSink{}
	m, err := New(testConfig("a", sink))
	if err != nil {
		t.Fatal(err)
	}
	if m.GossipAddr() != "" || len(m.Members()) != 0 || m.LocalName() != "a" {
		t.Errorf("before Start: GossipAddr %q, Members %+v, LocalName %q", m.GossipAddr(), m.Members(), m.LocalName())
	}
	early := testMeta("a")
	early.RaftAddr = "127.0.0.1:7947"
	if err := m.UpdateMeta(early); err != nil {
		t.Fatalf("UpdateMeta before Start: %v", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	got := m.Members()
	if len(got) != 1 || got[0].Name != "a" || !got[0].Self || got[0].State != StateAlive || got[0].Meta != early {
		t.Errorf("a alone sees %+v", got)
	}
	for range 2 {
		if err := m.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	if err := m.Leave(time.Second); err != nil {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := m.Start(); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Shutdown = %v, want ErrStopped", err)
	}
	if err := m.UpdateMeta(early); !errors.Is(err, ErrStopped) {
		t.Errorf("UpdateMeta after Shutdown = %v, want ErrStopped", err)
	}

	// Shutdown without Start is fine too.
	n, err := New(testConfig("b", sink))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}

	// A port in use fails Start, and leaves nothing running.
	a, _ := testNode(t, "c", nil)
	cfg := testConfig("d", sink)
	cfg.BindAddr = a.GossipAddr()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err == nil {
		t.Error("Start on a port in use succeeded")
	}
}

// A member that crashed and came back without seeds (or a partition that
// outlasted the suspicion timeout) is found again: memberlist alone would
// never probe a dead member again.
func TestDeadMemberIsReconnected(t *testing.T) {
	t.Parallel()
	a, _ := testNode(t, "a", nil) // no seeds
	b, _ := testNode(t, "b", joining(a.GossipAddr()))
	waitFor(t, converge, "2 alive members", func() bool { return allAlive([]*Membership{a, b}, "a", "b") })

	bAddr := b.GossipAddr()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, converge, "a to declare b dead", func() bool { return stateOf(a, "b") == StateDead })

	b2, _ := testNode(t, "b", func(c *Config) { c.BindAddr = bAddr }) // no seeds either
	waitFor(t, converge, "a and b to find each other again", func() bool { return allAlive([]*Membership{a, b2}, "a", "b") })
}

// TestFreshDeathIsRetriedSoon: a member just declared dead is retried
// JoinRetryMin later, with backoff, not only every JoinRetryMax (an hour
// here), so a short partition or a quick restart heals at once. Gossip to
// the dead is off: only the join loop can find b again.
func TestFreshDeathIsRetriedSoon(t *testing.T) {
	t.Parallel()
	slow := func(c *Config) {
		c.JoinRetryMax = time.Hour
		c.Tune = func(mc *memberlist.Config) {
			fastGossip(mc)
			mc.GossipToTheDeadTime = 0
		}
	}
	a, _ := testNode(t, "a", slow)
	b, _ := testNode(t, "b", func(c *Config) { slow(c); c.Join = []string{a.GossipAddr()} })
	waitFor(t, converge, "2 alive members", func() bool { return allAlive([]*Membership{a, b}, "a", "b") })

	bAddr := b.GossipAddr()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, converge, "a to declare b dead", func() bool { return stateOf(a, "b") == StateDead })

	b2, _ := testNode(t, "b", func(c *Config) { slow(c); c.BindAddr = bAddr }) // no seeds
	waitFor(t, converge, "a to find b again", func() bool { return allAlive([]*Membership{a, b2}, "a", "b") })
}
