package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// BootstrapSelf makes this node a single-voter cluster and, once it leads,
// applies seed (the default configuration, see DefaultSeed). It returns
// when the seed is applied (or at once with an empty seed). On a node that
// already has raft state it does nothing: the existing cluster wins, and
// the seed is only ever applied to fresh state.
func (s *Store) BootstrapSelf(seed []Command) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.HasState() {
		s.log.Info("raft state exists; not bootstrapping")
		return nil
	}
	s.setSeed(seed)
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: raft.ServerID(s.cfg.NodeID), Address: s.trans.LocalAddr()},
	}}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	s.log.Info("bootstrapped a single-node cluster", "id", s.cfg.NodeID, "addr", s.Addr())
	if len(seed) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, bootstrapSeedBound)
	defer cancel()
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for !s.IsLeader() {
		select {
		case <-t.C:
		case <-ctx.Done():
			if s.closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("raftstore: bootstrapped, but not leader after %s (the seed follows when elected): %w", bootstrapSeedBound, ErrNoLeader)
		}
	}
	// The leadership monitor may be applying it too; the FSM applies the
	// seed once.
	return s.applySeed(ctx)
}

// Bootstrap forms a cluster with servers as its voters (--bootstrap-expect).
// This node must be one of them, with its own raft address. Only one node
// needs to call it; the others are contacted by the leader. seed is applied
// once by this node if it becomes leader of a never-seeded cluster (give
// every node the same seed, see BootstrapExpect). On a node with raft state
// it does nothing.
func (s *Store) Bootstrap(servers []Server, seed []Command) error {
	if s.closed.Load() {
		return ErrClosed
	}
	conf := raft.Configuration{}
	ids, addrs := map[string]bool{}, map[string]bool{}
	self := false
	for _, srv := range servers {
		switch {
		case srv.ID == "" || srv.Address == "":
			return fmt.Errorf("raftstore: bootstrap: server %+v needs an ID and an address", srv)
		case ids[srv.ID] || addrs[srv.Address]:
			return fmt.Errorf("raftstore: bootstrap: duplicate server %s at %s", srv.ID, srv.Address)
		case srv.ID == s.cfg.NodeID && srv.Address != s.Addr():
			return fmt.Errorf("raftstore: bootstrap: this node's address is %s, not %s", s.Addr(), srv.Address)
		}
		ids[srv.ID], addrs[srv.Address] = true, true
		self = self || srv.ID == s.cfg.NodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(srv.ID), Address: raft.ServerAddress(srv.Address)})
	}
	if !self {
		return fmt.Errorf("raftstore: bootstrap: this node (%s) is not among the servers", s.cfg.NodeID)
	}
	if s.HasState() {
		s.log.Info("raft state exists; not bootstrapping")
		return nil
	}
	s.setSeed(seed)
	err := s.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	s.log.Info("bootstrapped a cluster", "voters", len(conf.Servers))
	return nil
}

// BootstrapExpect waits until expect alive members are visible (members is
// polled until ctx ends). Then, if this node has no raft state and has the
// lowest ID among the expect lowest alive members, it bootstraps with them
// as voters; the others wait to be contacted by the new leader. Every node
// keeps seed, so whichever becomes leader applies it (once). It returns
// when this node bootstrapped or a leader is known.
//
// One node deciding, by a rule all nodes evaluate alike, is what keeps
// nodes started together from forming several clusters. It relies on the
// members' views agreeing once expect nodes see each other (gossip
// converges quickly); it is for forming a new cluster, not for a node
// rejoining one (that node has state, or is added by the leader).
func (s *Store) BootstrapExpect(ctx context.Context, expect int, members func() []Member, seed []Command) error {
	if expect < 1 {
		return fmt.Errorf("raftstore: bootstrap-expect %d: must be at least 1", expect)
	}
	s.setSeed(seed)
	t := time.NewTicker(membersPoll)
	defer t.Stop()
	for {
		if s.closed.Load() {
			return ErrClosed
		}
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		if !s.HasState() {
			if servers, lowest := s.expectedVoters(members(), expect); lowest {
				return s.Bootstrap(servers, seed)
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// expectedVoters picks the expect lowest-ID alive members (this node
// always counts as alive, at its own address) and reports whether this
// node is the lowest of them.
func (s *Store) expectedVoters(members []Member, expect int) ([]Server, bool) {
	byID := map[string]Member{s.cfg.NodeID: {ID: s.cfg.NodeID, RaftAddr: s.Addr(), State: StateAlive}}
	for _, m := range members {
		if m.State == StateAlive && m.ID != "" && m.RaftAddr != "" && m.ID != s.cfg.NodeID {
			byID[m.ID] = m
		}
	}
	if len(byID) < expect {
		return nil, false
	}
	ids := sortedKeys(byID)[:expect]
	if ids[0] != s.cfg.NodeID {
		return nil, false
	}
	servers := make([]Server, len(ids))
	for i, id := range ids {
		servers[i] = Server{ID: id, Address: byID[id].RaftAddr, Suffrage: "voter"}
	}
	return servers, true
}
