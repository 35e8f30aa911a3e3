package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil {
		t.Fatal("empty Dir and NodeID accepted")
	}
	c := DefaultConfig()
	c.Dir, c.NodeID, c.BindAddr, c.AdvertiseAddr = "", "a b", "nope", "0.0.0.0:7947"
	err := c.Validate()
	for _, want := range []string{"Dir", "NodeID", "BindAddr", "AdvertiseAddr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, does not mention %s", err, want)
		}
	}
	c = DefaultConfig()
	c.Dir, c.NodeID, c.AdvertiseAddr = "/tmp/x", "n1", "10.0.0.1:7947"
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestSingleNode(t *testing.T) {
	n := openNode(t, "solo", nil)
	if n.s.HasState() {
		t.Fatal("fresh node has state")
	}
	if err := n.s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	if !n.s.IsLeader() || !n.s.HasState() {
		t.Fatalf("after BootstrapSelf: leader=%v state=%v", n.s.IsLeader(), n.s.HasState())
	}
	snap := n.s.Snapshot()
	if _, ok := snap.Remotes["default"]; !ok || len(snap.Repositories) != 1 || len(snap.Distributions) != 1 {
		t.Fatalf("seed not applied: %+v", snap)
	}
	if d, rest, ok := snap.DistributionByPath("/gpt2/resolve/main/config.json"); !ok || d.Name != "default" || rest != "/gpt2/resolve/main/config.json" {
		t.Fatalf("root distribution: %+v %q", d, rest)
	}
	// A second bootstrap (a restart, a retry) is a no-op.
	if err := n.s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	drain(n.s.Changes())

	ctx := ctxFor(t)
	idx, err := n.s.Apply(ctx, PutRemote(Remote{Name: "mirror", URL: "http://mirror.lab/", Token: "hf_x"}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.s.Changes():
	case <-time.After(waitBound):
		t.Fatal("no change notification")
	}
	if err := n.s.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	snap = n.s.Snapshot()
	m := snap.Remotes["mirror"]
	if m.Version != idx || m.URL != "http://mirror.lab" || !m.TokenSet || m.Token != "hf_x" || snap.Index < idx {
		t.Fatalf("mirror = %+v (index %d, snapshot %d)", m, idx, snap.Index)
	}

	// IfVersion: stale → conflict; current → ok; 0 on an existing → conflict.
	if _, err := n.s.Apply(ctx, PutRemote(Remote{Name: "mirror"}).WithIfVersion(idx-1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale if_version: %v", err)
	}
	if _, err := n.s.Apply(ctx, PutRemote(Remote{Name: "mirror"}).WithIfVersion(0)); !errors.Is(err, ErrConflict) {
		t.Fatalf("if_version 0 on existing: %v", err)
	}
	idx2, err := n.s.Apply(ctx, PutRemote(Remote{Name: "mirror", Policy: PolicyStreamed}).WithIfVersion(idx))
	if err != nil {
		t.Fatal(err)
	}
	// In use → conflict; missing → not found; invalid → fields.
	if _, err := n.s.Apply(ctx, PutRepository(Repository{Name: "r", Remote: "mirror"})); err != nil {
		t.Fatal(err)
	}
	if _, err := n.s.Apply(ctx, DeleteRemote("mirror")); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete in use: %v", err)
	}
	if _, err := n.s.Apply(ctx, DeleteRepository("default")); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete repository in use: %v", err)
	}
	if _, err := n.s.Apply(ctx, DeleteDistribution("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	var ve *ValidationError
	if _, err := n.s.Apply(ctx, PutDistribution(Distribution{Name: "x", BasePath: "/api", Repository: "r"})); !errors.As(err, &ve) || ve.Fields["base_path"] == "" {
		t.Fatalf("reserved base path: %v", err)
	}
	if _, err := n.s.Apply(ctx, seedCommand(DefaultSeed())); !errors.As(err, &ve) {
		t.Fatalf("seed through Apply: %v", err)
	}
	if _, err := n.s.Apply(ctx, DeleteRepository("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.s.Apply(ctx, DeleteRemote("mirror").WithIfVersion(idx2)); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.s.Snapshot().Remotes["mirror"]; ok {
		t.Fatal("mirror not deleted")
	}

	st := n.s.Status()
	if st.State != "leader" || st.LeaderID != "solo" || st.LeaderAddr != n.addr || len(st.Servers) != 1 ||
		st.Servers[0] != (Server{ID: "solo", Address: n.addr, Suffrage: "voter", Leader: true}) || st.Term == 0 || st.CommitIndex < idx2 {
		t.Fatalf("status: %+v", st)
	}
	// The seed is applied only to fresh state: after deleting everything
	// and restarting, nothing comes back.
	for _, c := range []Command{DeleteDistribution("default"), DeleteRepository("default"), DeleteRemote("default")} {
		if _, err := n.s.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	n.shutdown(t)
	n.open(t)
	if err := n.s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	if err := n.s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	idx3, err := n.s.Apply(ctx, PutRemote(Remote{Name: "after-restart"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.s.WaitIndex(ctx, idx3); err != nil {
		t.Fatal(err)
	}
	if s := n.s.Snapshot(); len(s.Remotes) != 1 || len(s.Distributions) != 0 {
		t.Fatalf("state after restart: %+v", s)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestNotBootstrapped(t *testing.T) {
	n := openNode(t, "lonely", nil)
	if _, err := n.s.Apply(context.Background(), PutRemote(Remote{Name: "x"})); !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("apply without a cluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.s.WaitLeader(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLeader: %v", err)
	}
	if err := n.s.Reconcile([]Member{{ID: "x", RaftAddr: "127.0.0.1:1", State: StateAlive}}, ReconcileConfig{}); err != nil {
		t.Fatalf("Reconcile on a non-leader: %v", err)
	}
	if err := n.s.TransferLeadership(); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("TransferLeadership: %v", err)
	}
}

func TestThreeNodes(t *testing.T) {
	nodes := cluster(t, 3, nil)
	for _, n := range nodes {
		if got := voters(n); len(got) != 3 {
			t.Fatalf("%s sees voters %v", n.id, got)
		}
	}
	ctx := ctxFor(t)
	idx := apply(t, nodes, PutRemote(Remote{Name: "everywhere", RefTTL: "5m"}))
	for _, n := range nodes {
		if err := n.s.WaitIndex(ctx, idx); err != nil {
			t.Fatal(err)
		}
		if r, ok := n.s.Snapshot().Remotes["everywhere"]; !ok || r.Version != idx || r.RefTTL != "5m" {
			t.Fatalf("%s: remote %+v", n.id, r)
		}
	}
	// A follower refuses writes and names the leader, so the caller can
	// forward.
	l := leader(t, nodes...)
	for _, n := range nodes {
		if n == l {
			continue
		}
		_, err := n.s.Apply(ctx, PutRemote(Remote{Name: "nope"}))
		var nl *NotLeaderError
		if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nl) || nl.LeaderAddr != l.addr || nl.LeaderID != l.id {
			t.Fatalf("%s: apply on a follower: %v (leader %s at %s)", n.id, err, l.id, l.addr)
		}
		if err := n.s.TransferLeadership(); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("TransferLeadership on a follower: %v", err)
		}
		if addr, id := n.s.Leader(); addr != l.addr || id != l.id {
			t.Fatalf("%s: leader %s %s", n.id, id, addr)
		}
		if st := n.s.Status(); st.State != "follower" || st.LeaderID != l.id || len(st.Servers) != 3 {
			t.Fatalf("%s: status %+v", n.id, st)
		}
	}
	// A deliberate transfer moves leadership.
	if err := l.s.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	if l2 := leader(t, nodes...); l2 == l {
		t.Fatal("leadership did not move")
	}
	apply(t, nodes, PutRemote(Remote{Name: "after-transfer"}))
}

func TestLeaderShutdown(t *testing.T) {
	nodes := cluster(t, 3, nil)
	old := leader(t, nodes...)
	old.shutdown(t)
	if err := old.s.Shutdown(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := old.s.Apply(context.Background(), PutRemote(Remote{Name: "x"})); !errors.Is(err, ErrClosed) {
		t.Fatalf("apply after shutdown: %v", err)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	l := leader(t, rest...)
	idx := apply(t, rest, PutRemote(Remote{Name: "after-failover"}))
	for _, n := range rest {
		if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
			t.Fatal(err)
		}
		if _, ok := n.s.Snapshot().Remotes["after-failover"]; !ok {
			t.Fatalf("%s misses the write made on %s", n.id, l.id)
		}
	}
}

func TestRestartAll(t *testing.T) {
	nodes := cluster(t, 3, nil)
	idx := apply(t, nodes, PutRemote(Remote{Name: "durable", Token: "hf_keep"}))
	for _, n := range nodes {
		if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.shutdown(t)
	}
	for _, n := range nodes {
		n.open(t)
		if !n.s.HasState() {
			t.Fatalf("%s lost its state", n.id)
		}
	}
	leader(t, nodes...)
	for _, n := range nodes {
		if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
			t.Fatal(err)
		}
		s := n.s.Snapshot()
		if r := s.Remotes["durable"]; r.Token != "hf_keep" || r.Version != idx || len(s.Distributions) != 1 {
			t.Fatalf("%s after restart: %+v", n.id, s)
		}
	}
	apply(t, nodes, PutRemote(Remote{Name: "after-restart"}))
}

func TestSnapshotCatchUp(t *testing.T) {
	tune := func(c *raft.Config) {
		c.SnapshotThreshold = 16
		c.SnapshotInterval = 20 * time.Millisecond
		c.TrailingLogs = 4
	}
	nodes := cluster(t, 3, tune)
	l := leader(t, nodes...)
	var down *testNode
	for _, n := range nodes {
		if n != l {
			down = n
			break
		}
	}
	downLast := down.s.Status().LastIndex
	down.shutdown(t)
	var up []*testNode
	for _, n := range nodes {
		if n != down {
			up = append(up, n)
		}
	}
	var idx uint64
	for i := range 100 {
		idx = apply(t, up, PutRemote(Remote{Name: "r" + strconv.Itoa(i%10), RefTTL: fmt.Sprintf("%ds", i)}))
	}
	// Wait until both nodes compacted their logs past what the down node
	// has: whichever leads when it comes back must send a snapshot.
	waitFor(t, "snapshots on both nodes", func() bool {
		for _, n := range up {
			first, err := n.s.logs.FirstIndex()
			if err != nil || first <= downLast+1 {
				return false
			}
		}
		return true
	})
	// Opening restores the node's own latest snapshot, if it has one,
	// before Open returns; the leader's may be installed any time after,
	// even before this goroutine next runs, so count what opening alone
	// restores from the disk rather than reading the counter after Open.
	local, err := raft.NewFileSnapshotStore(down.dir, 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := local.List()
	if err != nil {
		t.Fatal(err)
	}
	restoredAtOpen := int64(min(len(metas), 1))
	down.open(t)
	if err := down.s.WaitIndex(ctxFor(t), idx); err != nil {
		t.Fatal(err)
	}
	if got := down.s.fsm.restores.Load(); got <= restoredAtOpen {
		t.Fatalf("caught up without installing a snapshot (%d restores, %d of them from its own disk)", got, restoredAtOpen)
	}
	want := leader(t, nodes...).s.Snapshot()
	got := down.s.Snapshot()
	if len(got.Remotes) != len(want.Remotes) || got.Remotes["r9"].Version != want.Remotes["r9"].Version || got.Remotes["r9"].RefTTL != "99s" {
		t.Fatalf("caught-up state differs: %+v vs %+v", got.Remotes["r9"], want.Remotes["r9"])
	}
}

func TestShutdownNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		n := openNode(t, "leaky", nil)
		if err := n.s.BootstrapSelf(DefaultSeed()); err != nil {
			t.Fatal(err)
		}
		if _, err := n.s.Apply(ctxFor(t), PutRemote(Remote{Name: "x"})); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := n.s.Shutdown(); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.s.WaitIndex(context.Background(), 1<<40); !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitIndex after shutdown: %v", err)
		}
		if err := n.s.WaitLeader(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitLeader after shutdown: %v", err)
		}
		if err := n.s.BootstrapSelf(nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("BootstrapSelf after shutdown: %v", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
