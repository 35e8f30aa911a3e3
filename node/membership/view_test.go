package membership

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func node(t *testing.T, name string, meta Meta, life string) *memberlist.Node {
	t.Helper()
	b, err := encodeMeta(meta, life)
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.ParseIP("10.0.0.9"), Port: 7946, Meta: b}
}

// TestViewStates drives the view as memberlist and the log bridge would.
func TestViewStates(t *testing.T) {
	sink := &logSink{}
	v := newView("self", slog.New(sink.handler()))
	now := time.Unix(1_700_000_000, 0)
	v.now = func() time.Time { return now }
	meta := testMeta("x")

	step := func(what string, f func(), want State, wantSignal bool) {
		t.Helper()
		drain(v.changes)
		f()
		got := Member{}
		for _, m := range v.snapshot() {
			if m.Name == "x" {
				got = m
			}
		}
		if got.State != want {
			t.Errorf("%s: state %q, want %q", what, got.State, want)
		}
		signalled := len(v.changes) == 1
		if signalled != wantSignal {
			t.Errorf("%s: signalled %v, want %v", what, signalled, wantSignal)
		}
	}

	const life1, life2, life3 = "1111111111111111", "2222222222222222", "3333333333333333"
	step("join", func() { v.NotifyJoin(node(t, "x", meta, life1)) }, StateAlive, true)
	step("answered probe", func() { v.NotifyPingComplete(node(t, "x", meta, life1), time.Millisecond, nil) }, StateAlive, false)
	step("failed probe", func() { v.suspect("x") }, StateSuspect, true)
	step("failed probe again", func() { v.suspect("x") }, StateSuspect, false)
	step("refuted: answers a probe", func() { v.NotifyPingComplete(node(t, "x", meta, life1), time.Millisecond, nil) }, StateAlive, true)
	step("suspect again", func() { v.suspect("x") }, StateSuspect, true)
	meta2 := meta
	meta2.Version = "v2"
	step("refuted with new meta", func() { v.NotifyUpdate(node(t, "x", meta2, life1)) }, StateAlive, true)
	step("same meta again", func() { v.NotifyUpdate(node(t, "x", meta2, life1)) }, StateAlive, false)
	step("declared dead", func() { v.NotifyLeave(node(t, "x", meta2, life1)) }, StateDead, true)
	step("a dead member is not suspected", func() { v.suspect("x") }, StateDead, false)
	step("back", func() { v.NotifyJoin(node(t, "x", meta, life1)) }, StateAlive, true)
	step("announces its leave", func() { v.leaveNotice(leaveNotice{Name: "x", Life: life1}) }, StateAlive, false)
	step("leaves", func() { v.NotifyLeave(node(t, "x", meta, life1)) }, StateLeft, true)
	step("restarts", func() { v.NotifyJoin(node(t, "x", meta, life2)) }, StateAlive, true)
	step("a stale notice", func() { v.leaveNotice(leaveNotice{Name: "x", Life: life1}) }, StateAlive, false)
	step("crashes", func() { v.NotifyLeave(node(t, "x", meta, life2)) }, StateDead, true)
	step("a stale notice for the dead", func() { v.leaveNotice(leaveNotice{Name: "x", Life: life1}) }, StateDead, false)
	step("restarts again", func() { v.NotifyJoin(node(t, "x", meta, life3)) }, StateAlive, true)
	step("leave seen as a death first", func() { v.NotifyLeave(node(t, "x", meta, life3)) }, StateDead, true)
	step("then its notice", func() { v.leaveNotice(leaveNotice{Name: "x", Life: life3}) }, StateLeft, true)

	if got := v.snapshot(); len(got) != 1 || got[0].Meta != meta || got[0].Addr != "10.0.0.9:7946" || got[0].Self {
		t.Errorf("snapshot = %+v", got)
	}
	now = now.Add(forgetAfter - time.Second)
	if len(v.snapshot()) != 1 {
		t.Error("left member forgotten too early")
	}
	now = now.Add(2 * time.Second)
	if got := v.snapshot(); len(got) != 0 {
		t.Errorf("left member kept after %v: %+v", forgetAfter, got)
	}

	// This node is never suspect in its own view, and its death is its leave.
	v.NotifyJoin(node(t, "self", testMeta("self"), life1))
	v.suspect("self")
	if got := v.snapshot(); len(got) != 1 || got[0].State != StateAlive || !got[0].Self {
		t.Errorf("self: %+v", got)
	}
	v.NotifyLeave(node(t, "self", testMeta("self"), life1))
	if got := v.snapshot(); len(got) != 1 || got[0].State != StateLeft {
		t.Errorf("self after leave: %+v", got)
	}

	// Metadata from something else is kept as a member, with a warning.
	bad := &memberlist.Node{Name: "y", Addr: net.ParseIP("10.0.0.8"), Port: 7946, Meta: []byte("garbage")}
	v.NotifyJoin(bad)
	if st := v.snapshot(); len(st) != 2 || st[1].Name != "y" || st[1].State != StateAlive || st[1].Meta != (Meta{}) {
		t.Errorf("member with bad meta: %+v", st)
	}
	if sink.count("unreadable metadata", "member=y") != 1 {
		t.Errorf("no warning for bad meta:\n%s", sink)
	}
}

func TestSnapshotIsSorted(t *testing.T) {
	v := newView("b", slog.New(slog.DiscardHandler))
	for _, name := range []string{"c", "a", "d", "b"} {
		v.NotifyJoin(node(t, name, testMeta(name), newLife()))
	}
	var names []string
	for _, m := range v.snapshot() {
		names = append(names, m.Name)
	}
	if got := len(names); got != 4 || names[0] != "a" || names[1] != "b" || names[2] != "c" || names[3] != "d" {
		t.Errorf("order %v", names)
	}
}

func TestLeaveNoticeWire(t *testing.T) {
	n := leaveNotice{Name: "node-1", Life: newLife()}
	got, ok := decodeLeaveNotice(encodeLeaveNotice(n))
	if !ok || got != n {
		t.Errorf("round trip: %+v %v", got, ok)
	}
	for _, bad := range [][]byte{nil, []byte("L"), []byte("X{}"), []byte(`L{"n":"a"}`), []byte("Lnot json")} {
		if _, ok := decodeLeaveNotice(bad); ok {
			t.Errorf("decoded %q", bad)
		}
	}
	if len(newLife()) != lifeLen || newLife() == newLife() {
		t.Error("newLife")
	}
}

// TestSuspicionExpires: a suspicion memberlist cleared without an event
// (refuted) ends once memberlist's longest suspicion timeout has passed.
func TestSuspicionExpires(t *testing.T) {
	v := newView("self", slog.New(slog.DiscardHandler))
	now := time.Unix(1_700_000_000, 0)
	v.now = func() time.Time { return now }
	v.setSuspicionBound(100*time.Millisecond, 2, 6) // 6 × 2 × 100ms + 100ms = 1.3s for a small cluster
	v.NotifyJoin(node(t, "x", testMeta("x"), "1111111111111111"))
	state := func() State { return v.snapshot()[0].State }

	v.suspect("x")
	now = now.Add(time.Second)
	v.suspect("x") // failed again: the clock restarts
	now = now.Add(1200 * time.Millisecond)
	if got := state(); got != StateSuspect {
		t.Fatalf("suspicion ended early: %s", got)
	}
	drain(v.changes)
	now = now.Add(200 * time.Millisecond)
	// Any probe result (here: of another member) notices the expiry.
	v.NotifyPingComplete(node(t, "other", testMeta("other"), "2222222222222222"), time.Millisecond, nil)
	if len(v.changes) != 1 {
		t.Error("no change signalled for the expired suspicion")
	}
	if got := state(); got != StateAlive {
		t.Fatalf("suspicion outlived memberlist's: %s", got)
	}
}
