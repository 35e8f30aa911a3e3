package raftstore

import (
	"fmt"
	"maps"
)

// state is the configuration the FSM holds. It is plain data: apply is
// deterministic and never fails halfway (it checks first, then mutates),
// so every node that applies the same log reaches the same state.
type state struct {
	Remotes       map[string]Remote       `json:"remotes"`
	Repositories  map[string]Repository   `json:"repositories"`
	Distributions map[string]Distribution `json:"distributions"`
	// Seeded marks that the bootstrap seed was applied (or skipped because
	// the configuration was not empty); it is never applied again.
	Seeded bool `json:"seeded"`
	// Index is the last Raft index applied.
	Index uint64 `json:"index"`
}

func newState() *state {
	return &state{
		Remotes:       map[string]Remote{},
		Repositories:  map[string]Repository{},
		Distributions: map[string]Distribution{},
	}
}

func (st *state) empty() bool {
	return len(st.Remotes) == 0 && len(st.Repositories) == 0 && len(st.Distributions) == 0
}

// clone is a deep copy.
func (st *state) clone() *state {
	c := &state{
		Remotes:       make(map[string]Remote, len(st.Remotes)),
		Repositories:  make(map[string]Repository, len(st.Repositories)),
		Distributions: maps.Clone(st.Distributions),
		Seeded:        st.Seeded,
		Index:         st.Index,
	}
	if c.Distributions == nil {
		c.Distributions = map[string]Distribution{}
	}
	for k, v := range st.Remotes {
		c.Remotes[k] = v.clone()
	}
	for k, v := range st.Repositories {
		c.Repositories[k] = v.clone()
	}
	return c
}

func (st *state) snapshot() Snapshot {
	c := st.clone()
	return Snapshot{Remotes: c.Remotes, Repositories: c.Repositories, Distributions: c.Distributions, Index: c.Index}
}

// apply checks cmd against st and, if it passes, applies it as the log
// entry at index. changed reports whether any object changed. On error st
// is untouched.
func (st *state) apply(cmd Command, index uint64) (changed bool, err error) {
	cmd = cmd.clone()
	if err := st.check(&cmd); err != nil {
		return false, err
	}
	switch cmd.Op {
	case OpPutRemote:
		r := *cmd.Remote
		if r.Token == "" && r.TokenSet {
			// A round trip of a redacted remote keeps the stored token.
			r.Token = st.Remotes[r.Name].Token
		}
		r.TokenSet = r.Token != ""
		r.Version = index
		st.Remotes[r.Name] = r
	case OpPutRepository:
		r := *cmd.Repository
		r.Version = index
		st.Repositories[r.Name] = r
	case OpPutDistribution:
		d := *cmd.Distribution
		d.Version = index
		st.Distributions[d.Name] = d
	case OpDeleteRemote:
		delete(st.Remotes, cmd.Name)
	case OpDeleteRepository:
		delete(st.Repositories, cmd.Name)
	case OpDeleteDistribution:
		delete(st.Distributions, cmd.Name)
	case opSeed:
		if st.Seeded {
			return false, nil
		}
		if !st.empty() {
			// Someone configured the cluster before the seed got
			// through; their configuration wins.
			st.Seeded = true
			return false, nil
		}
		scratch := st.clone()
		for i, c := range cmd.Seed {
			if _, err := scratch.apply(c, index); err != nil {
				return false, fmt.Errorf("raftstore: seed command %d (%s %q): %w", i, c.Op, c.ObjectName(), err)
			}
		}
		scratch.Seeded = true
		*st = *scratch
	}
	return true, nil
}
