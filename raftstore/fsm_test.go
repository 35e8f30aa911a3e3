package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

func stateJSON(st *state) string {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func logEntry(t *testing.T, index uint64, c Command) *raft.Log {
	t.Helper()
	b, err := encodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

type memSink struct {
	bytes.Buffer
	failWrite        bool
	closed, canceled bool
}

func (s *memSink) ID() string { return "mem" }
func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.canceled = true; return nil }

func TestFSMApplySnapshotRestore(t *testing.T) {
	f := newFSM(slog.New(slog.DiscardHandler))
	if resp := f.Apply(logEntry(t, 5, PutRemote(Remote{Name: "hf", Token: "t0k"}))); resp != nil {
		t.Fatalf("apply: %v", resp)
	}
	select {
	case <-f.changes:
	default:
		t.Fatal("no change notification")
	}
	// A refused command is the response, advances the index, changes nothing.
	resp := f.Apply(logEntry(t, 6, DeleteRemote("nope")))
	if err, _ := resp.(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("response = %v", resp)
	}
	if idx, _ := f.index(); idx != 6 {
		t.Fatalf("index = %d", idx)
	}
	select {
	case <-f.changes:
		t.Fatal("change notified for a refused command")
	default:
	}
	// Undecodable data is refused, not a panic.
	if resp := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte("{")}); resp == nil {
		t.Fatal("garbage applied")
	}
	f.StoreConfiguration(8, raft.Configuration{})
	if idx, _ := f.index(); idx != 8 {
		t.Fatalf("index after configuration = %d", idx)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot is a copy: later changes do not leak into it.
	f.Apply(logEntry(t, 9, PutRemote(Remote{Name: "later"})))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed || sink.canceled {
		t.Fatalf("persist: %v closed=%v canceled=%v", err, sink.closed, sink.canceled)
	}
	snap.Release()

	g := newFSM(slog.New(slog.DiscardHandler))
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	s := g.snapshot()
	if s.Index != 8 || len(s.Remotes) != 1 || s.Remotes["hf"].Token != "t0k" || s.Remotes["hf"].Version != 5 {
		t.Fatalf("restored: %+v", s)
	}
	select {
	case <-g.changes:
	default:
		t.Fatal("restore did not notify")
	}
	if g.restores.Load() != 1 {
		t.Fatal("restore not counted")
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte(`{"v":9,"state":{}}`)))); err == nil {
		t.Fatal("future snapshot version accepted")
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	f := newFSM(slog.New(slog.DiscardHandler))
	snap, _ := f.Snapshot()
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil || !sink.canceled || sink.closed {
		t.Fatalf("persist: %v canceled=%v closed=%v", err, sink.canceled, sink.closed)
	}
}

func TestSnapshotIsDeepCopy(t *testing.T) {
	st := baseState(t)
	if _, err := st.apply(PutRepository(Repository{Name: "w", Remote: "hf", Warm: []WarmEntry{{Type: "model", Repo: "gpt2", Include: []string{"*.json"}}}}), 20); err != nil {
		t.Fatal(err)
	}
	if _, err := st.apply(PutRemote(Remote{Name: "g", Include: []string{"a/*"}}), 21); err != nil {
		t.Fatal(err)
	}
	s := st.snapshot()
	s.Repositories["w"].Warm[0].Include[0] = "mutated"
	s.Remotes["g"].Include[0] = "mutated"
	delete(s.Distributions, "main")
	if st.Repositories["w"].Warm[0].Include[0] != "*.json" || st.Remotes["g"].Include[0] != "a/*" || len(st.Distributions) != 1 {
		t.Fatal("snapshot shares memory with the state")
	}
}
