package raftstore

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapshotVersion is the version of the snapshot encoding.
const snapshotVersion = 1

// fsm is the Raft state machine: the configuration state behind a RWMutex.
// Readers (Store.Snapshot, validation on the leader) take the read lock;
// Apply and Restore take the write lock, so a reader never sees a
// half-restored state.
type fsm struct {
	log *slog.Logger

	mu sync.RWMutex
	st *state
	// advanced is closed (and replaced) whenever st.Index moves, waking
	// WaitIndex callers.
	advanced chan struct{}

	changes  chan struct{} // buffer 1, coalesced
	restores atomic.Int64  // snapshots restored (at start and installed)
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
	_ raft.FSMSnapshot        = (*fsmSnapshot)(nil)
)

func newFSM(log *slog.Logger) *fsm {
	return &fsm{log: log, st: newState(), advanced: make(chan struct{}), changes: make(chan struct{}, 1)}
}

// Apply applies a committed command. The command is validated again here
// against the state it is applied to: two commands validated concurrently
// on the leader may no longer both be valid in log order. The error (if
// any) becomes the ApplyFuture's response on the leader; every node reaches
// the same verdict, so no node's state diverges.
func (f *fsm) Apply(l *raft.Log) any {
	cmd, err := decodeCommand(l.Data)
	changed := false
	f.mu.Lock()
	if err == nil {
		changed, err = f.st.apply(cmd, l.Index)
	}
	f.advanceLocked(l.Index)
	f.mu.Unlock()
	if changed {
		f.notifyChange()
	}
	if err != nil {
		f.log.Debug("command refused", "index", l.Index, "command", cmd, "error", err)
		return err
	}
	return nil
}

// StoreConfiguration is called for committed membership changes. The
// configuration itself lives in raft; the FSM only records the index, so
// WaitIndex also works for the indexes of membership changes.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.mu.Lock()
	f.advanceLocked(index)
	f.mu.Unlock()
}

func (f *fsm) advanceLocked(index uint64) {
	if index > f.st.Index {
		f.st.Index = index
		close(f.advanced)
		f.advanced = make(chan struct{})
	}
}

func (f *fsm) notifyChange() {
	select {
	case f.changes <- struct{}{}:
	default: // a notification is already pending; it covers this change
	}
}

// Snapshot copies the state under the read lock; Persist encodes the copy
// while Apply carries on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{st: f.st.clone()}, nil
}

type snapshotFile struct {
	V     int    `json:"v"`
	State *state `json:"state"`
}

// Restore replaces the state with a snapshot's, under the lock readers use.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var sf snapshotFile
	if err := json.NewDecoder(rc).Decode(&sf); err != nil {
		return fmt.Errorf("raftstore: decode snapshot: %w", err)
	}
	if sf.V < 1 || sf.V > snapshotVersion || sf.State == nil {
		return fmt.Errorf("raftstore: unsupported snapshot version %d", sf.V)
	}
	st := sf.State
	if st.Remotes == nil {
		st.Remotes = map[string]Remote{}
	}
	if st.Repositories == nil {
		st.Repositories = map[string]Repository{}
	}
	if st.Distributions == nil {
		st.Distributions = map[string]Distribution{}
	}
	f.mu.Lock()
	f.st = st
	close(f.advanced) // the index may have moved either way; wake waiters to re-check
	f.advanced = make(chan struct{})
	f.mu.Unlock()
	f.restores.Add(1)
	f.notifyChange()
	f.log.Info("restored configuration from snapshot", "index", st.Index,
		"remotes", len(st.Remotes), "repositories", len(st.Repositories), "distributions", len(st.Distributions))
	return nil
}

// snapshot returns a deep copy of the current state.
func (f *fsm) snapshot() Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.snapshot()
}

// check normalises and validates cmd against the current state.
func (f *fsm) check(cmd *Command) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.check(cmd)
}

func (f *fsm) seeded() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Seeded
}

// index returns the applied index and a channel closed when it next moves.
func (f *fsm) index() (uint64, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Index, f.advanced
}

type fsmSnapshot struct {
	st *state
}

// Persist writes the copy as JSON; on any error it cancels the sink so raft
// discards the partial snapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(snapshotFile{V: snapshotVersion, State: s.st})
	if err == nil {
		err = sink.Close()
	} else {
		err = fmt.Errorf("raftstore: persist snapshot: %w", err)
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return nil
}

func (s *fsmSnapshot) Release() {}
