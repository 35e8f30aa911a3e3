package raftstore

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReconcileVotersAndReaping(t *testing.T) {
	clock := newFakeClock() // one clock, whichever node leads
	nodes := make([]*testNode, 5)
	for i := range nodes {
		nodes[i] = openNodeClock(t, fmt.Sprintf("n%d", i+1), nil, clock)
	}
	a := nodes[0]
	if err := a.s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	rc := ReconcileConfig{Voters: 3, ReapAfter: time.Minute}
	members := func(states map[string]string) []Member {
		var ms []Member
		for _, n := range nodes {
			st := StateAlive
			if s, ok := states[n.id]; ok {
				st = s
			}
			ms = append(ms, n.member(st))
		}
		return ms
	}
	reconcile := func(states map[string]string) {
		t.Helper()
		reconcile(t, nodes, members(states), rc)
	}
	lead := func() *testNode { return leader(t, running(nodes)...) }
	reconcile(nil)
	want := map[string]string{"n1": "voter", "n2": "voter", "n3": "voter", "n4": "nonvoter", "n5": "nonvoter"}
	if got := servers(lead()); !reflect.DeepEqual(got, want) {
		t.Fatalf("servers = %v, want %v", got, want)
	}
	// Idempotent: the same view changes nothing.
	last := lead().s.Status().LastIndex
	reconcile(nil)
	if lead().s.Status().LastIndex != last {
		t.Fatal("a repeated reconcile changed the configuration")
	}
	// Followers are not in charge.
	l := leader(t, nodes...)
	for _, n := range nodes {
		if n != l {
			if err := n.s.Reconcile(members(map[string]string{"n3": StateLeft}), rc); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, ok := servers(lead())["n3"]; !ok {
		t.Fatal("a follower's reconcile removed a server")
	}
	// Non-voters replicate too.
	idx := apply(t, nodes, PutRemote(Remote{Name: "seen-by-all"}))
	for _, n := range nodes {
		if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
	}

	// n2, a voter, dies: kept while within ReapAfter (it may come back)...
	nodes[1].shutdown(t)
	dead := map[string]string{"n2": StateDead}
	reconcile(dead)
	clock.Advance(30 * time.Second)
	reconcile(dead)
	if servers(lead())["n2"] != "voter" {
		t.Fatal("dead voter removed before ReapAfter")
	}
	// ...and removed after it; the lowest alive non-voter takes its vote.
	clock.Advance(31 * time.Second)
	reconcile(dead)
	want = map[string]string{"n1": "voter", "n3": "voter", "n4": "voter", "n5": "nonvoter"}
	if got := servers(lead()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reaping: %v, want %v", got, want)
	}
	// "suspect" is left alone, whatever the clock says.
	clock.Advance(time.Hour)
	reconcile(map[string]string{"n2": StateDead, "n5": StateSuspect})
	if _, ok := servers(lead())["n5"]; !ok {
		t.Fatal("suspect member removed")
	}
	// "left" is removed at once.
	nodes[4].shutdown(t)
	reconcile(map[string]string{"n2": StateDead, "n5": StateLeft})
	want = map[string]string{"n1": "voter", "n3": "voter", "n4": "voter"}
	if got := servers(lead()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after leave: %v, want %v", got, want)
	}

	// n3 comes back at another address: removed, then added again.
	nodes[2].shutdown(t)
	nodes[2].addr = "127.0.0.1:0"
	nodes[2].open(t)
	reconcile(map[string]string{"n2": StateDead, "n5": StateLeft})
	if got := servers(lead()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after move: %v, want %v", got, want)
	}
	for _, s := range lead().s.Status().Servers {
		if s.ID == "n3" && s.Address != nodes[2].addr {
			t.Fatalf("n3 at %s, want %s", s.Address, nodes[2].addr)
		}
	}
	idx = apply(t, running(nodes), PutRemote(Remote{Name: "after-move"}))
	if err := nodes[2].s.WaitIndex(ctxFor(t), idx); err != nil {
		t.Fatal(err)
	}
	// The leader never removes itself, whatever it is told.
	l = lead()
	reconcile(map[string]string{l.id: StateLeft, "n2": StateDead, "n5": StateLeft})
	if _, ok := servers(lead())[l.id]; !ok || !l.s.IsLeader() {
		t.Fatal("the leader removed itself")
	}
}

// TestReconcileMissingMember: a server the view no longer lists is reaped
// like a dead one.
func TestReconcileMissingMember(t *testing.T) {
	nodes := cluster(t, 3, nil)
	l := leader(t, nodes...)
	var gone *testNode
	var view []Member
	for _, n := range nodes {
		if n != l && gone == nil {
			gone = n
			continue
		}
		view = append(view, n.member(StateAlive))
	}
	gone.shutdown(t)
	rc := ReconcileConfig{Voters: 3, ReapAfter: time.Minute}
	if err := l.s.Reconcile(view, rc); err != nil {
		t.Fatal(err)
	}
	if _, ok := servers(l)[gone.id]; !ok {
		t.Fatal("missing member removed at once")
	}
	l.clock.Advance(2 * time.Minute)
	if err := l.s.Reconcile(view, rc); err != nil {
		t.Fatal(err)
	}
	if _, ok := servers(l)[gone.id]; ok {
		t.Fatal("missing member never reaped")
	}
}

func TestBootstrapExpect(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			nodes := make([]*testNode, 3)
			for i := range nodes {
				nodes[i] = openNode(t, fmt.Sprintf("n%d", i+1), nil)
			}
			all := make([]Member, len(nodes))
			for i, n := range nodes {
				all[i] = n.member(StateAlive)
			}
			// Gossip converges at different speeds: node i sees only
			// itself for its first 2*i+round polls.
			views := make([]func() []Member, len(nodes))
			for i := range nodes {
				var calls atomic.Int32
				self := all[i]
				views[i] = func() []Member {
					if int(calls.Add(1)) <= 2*i+round {
						return []Member{self}
					}
					return all
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			var wg sync.WaitGroup
			errs := make([]error, len(nodes))
			// Start in reverse so the lowest ID is not simply first.
			for i := len(nodes) - 1; i >= 0; i-- {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = nodes[i].s.BootstrapExpect(ctx, 3, views[i], DefaultSeed())
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", nodes[i].id, err)
				}
			}
			l := leader(t, nodes...)
			want := []string{"n1", "n2", "n3"}
			waitFor(t, "every node sees the same three voters", func() bool {
				for _, n := range nodes {
					if !reflect.DeepEqual(voters(n), want) {
						return false
					}
				}
				return true
			})
			// The seed is applied exactly once, by the leader.
			waitFor(t, "seed", func() bool { return l.s.fsm.seeded() })
			idx := apply(t, nodes, PutRemote(Remote{Name: "one-cluster"}))
			for _, n := range nodes {
				if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
					t.Fatal(err)
				}
				s := n.s.Snapshot()
				if len(s.Remotes) != 2 || len(s.Distributions) != 1 || s.Remotes["default"].Version == 0 {
					t.Fatalf("%s: %+v", n.id, s)
				}
				if _, id := n.s.Leader(); id != l.id {
					t.Fatalf("%s follows %s, not %s", n.id, id, l.id)
				}
			}
		})
	}
}

func TestBootstrapValidation(t *testing.T) {
	n := openNode(t, "b1", nil)
	for _, servers := range [][]Server{
		{{ID: "other", Address: "127.0.0.1:1"}},
		{{ID: "b1", Address: "127.0.0.1:1"}},
		{{ID: "b1", Address: n.addr}, {ID: "b2", Address: n.addr}},
		{{ID: "b1", Address: n.addr}, {ID: "", Address: "127.0.0.1:2"}},
	} {
		if err := n.s.Bootstrap(servers, nil); err == nil {
			t.Errorf("Bootstrap(%v) accepted", servers)
		}
	}
	if n.s.HasState() {
		t.Fatal("a refused bootstrap wrote state")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	lone := func() []Member { return nil }
	if err := n.s.BootstrapExpect(ctx, 2, lone, nil); err != context.DeadlineExceeded {
		t.Fatalf("BootstrapExpect with too few members: %v", err)
	}
	if err := n.s.BootstrapExpect(ctxFor(t), 1, lone, DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "seeded single node", func() bool { return len(n.s.Snapshot().Distributions) == 1 })
}

// TestReconcileUnreachableGetsNoVote: a member whose raft address does not
// answer is added as a non-voter, so a lone leader keeps its quorum, and
// is promoted once it answers.
func TestReconcileUnreachableGetsNoVote(t *testing.T) {
	a := openNode(t, "a", nil)
	if err := a.s.BootstrapSelf(nil); err != nil {
		t.Fatal(err)
	}
	b := openNode(t, "b", nil)
	realAddr := b.addr
	b.shutdown(t) // its port now refuses connections
	members := []Member{a.member(StateAlive), b.member(StateAlive)}
	reconcile(t, []*testNode{a}, members, ReconcileConfig{Voters: 3})
	if got := servers(a); got["b"] != "nonvoter" {
		t.Fatalf("unreachable member: %v", got)
	}
	apply(t, []*testNode{a}, PutRemote(Remote{Name: "still-writable"}))

	b.addr = realAddr
	b.open(t)
	reconcile(t, []*testNode{a}, members, ReconcileConfig{Voters: 3})
	if got := servers(a); got["b"] != "voter" {
		t.Fatalf("reachable member not promoted: %v", got)
	}
	idx := apply(t, []*testNode{a, b}, PutRemote(Remote{Name: "replicated"}))
	if err := b.s.WaitIndex(ctxFor(t), idx); err != nil {
		t.Fatal(err)
	}
}
