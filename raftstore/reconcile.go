package raftstore

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Member states, as the membership layer (memberlist) reports them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Member is a node as the membership layer sees it.
type Member struct {
	ID       string // node name = raft server ID
	RaftAddr string // "host:port" of its raft transport
	State    string // StateAlive, StateSuspect, StateDead or StateLeft
}

// ReconcileConfig says how many voters the cluster wants and how long a
// dead member keeps its place.
type ReconcileConfig struct {
	Voters    int           // default 3
	ReapAfter time.Duration // default 10m
}

const (
	defaultVoters    = 3
	defaultReapAfter = 10 * time.Minute
	membershipBound  = 10 * time.Second // enqueue timeout of one membership change
	reachableBound   = time.Second      // dial check before giving a member a vote
)

// Reconcile brings the raft configuration in line with the membership
// layer's view (nomad's reconcileMember, applied to the whole list). It
// acts only on the leader and is a no-op elsewhere; call it on every
// membership change and periodically. members should be the full view:
// a raft server missing from it is treated like a dead one.
//
// The rules, in order:
//
//   - The leader never removes or re-adds itself (it would step down).
//   - "left" members are removed at once: they said goodbye.
//   - "dead" members (and servers the view no longer lists) are removed
//     only after ReapAfter, counted with the injected clock from the first
//     reconcile that saw them dead: a node that reboots or sits behind a
//     short partition keeps its place (and its vote) instead of being
//     removed and re-added. "suspect" members are left alone.
//   - An alive member whose ID is known at another address is removed and
//     added again (it moved); one with the same ID and address is a no-op,
//     so repeated calls are idempotent. A server holding an alive member's
//     address under another ID is removed first (raft refuses duplicate
//     addresses).
//   - Alive members not in the configuration are added: as voters while
//     the configuration has fewer than Voters voters, else as non-voters,
//     which replicate everything but do not count for quorum, so a large
//     cluster's writes do not wait for every node.
//   - While there are fewer than Voters voters, alive non-voters are
//     promoted (lowest ID first), e.g. after a dead voter is reaped.
//   - A vote is only given to a member whose raft address accepts a TCP
//     connection: an unreachable voter would still count toward quorum,
//     and in a one- or two-voter cluster it would leave no leader for
//     good. Such a member is added as a non-voter and promoted later.
//
// Changes are made one at a time (raft allows one configuration change in
// flight); errors are collected and the rest still attempted.
func (s *Store) Reconcile(members []Member, rc ReconcileConfig) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !s.IsLeader() {
		return nil
	}
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	if rc.Voters <= 0 {
		rc.Voters = defaultVoters
	}
	if rc.ReapAfter <= 0 {
		rc.ReapAfter = defaultReapAfter
	}
	servers, err := s.servers()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	self := s.cfg.NodeID

	byID := make(map[string]Member, len(members))
	for _, m := range members {
		if m.ID != "" {
			byID[m.ID] = m
		}
	}
	cur := make(map[string]raft.Server, len(servers))
	for _, srv := range servers {
		cur[string(srv.ID)] = srv
	}

	for id := range s.unreachable {
		if _, ok := byID[id]; !ok {
			delete(s.unreachable, id)
		}
	}
	// Track when each member was first seen dead (or missing).
	for id := range s.deadSince {
		_, member := byID[id]
		_, server := cur[id]
		if !member && !server {
			delete(s.deadSince, id)
		}
	}
	for id := range cur {
		if m, ok := byID[id]; (!ok || m.State == StateDead) && id != self {
			if _, tracked := s.deadSince[id]; !tracked {
				s.deadSince[id] = now
			}
		} else {
			delete(s.deadSince, id)
		}
	}

	var errs []error
	remove := func(id, why string) {
		if err := s.raft.RemoveServer(raft.ServerID(id), 0, membershipBound).Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: remove %s (%s): %w", id, why, s.translate(err)))
			return
		}
		s.log.Info("removed raft server", "id", id, "address", cur[id].Address, "reason", why)
		delete(cur, id)
		delete(s.deadSince, id)
	}

	// Removals.
	for _, id := range sortedKeys(cur) {
		if id == self {
			continue
		}
		m, known := byID[id]
		switch {
		case known && m.State == StateLeft:
			remove(id, "left")
		case !known || m.State == StateDead:
			if dead := now.Sub(s.deadSince[id]); dead >= rc.ReapAfter {
				remove(id, fmt.Sprintf("dead for %s", dead.Round(time.Second)))
			}
		case m.State == StateAlive && m.RaftAddr != "" && string(cur[id].Address) != m.RaftAddr:
			remove(id, "address changed to "+m.RaftAddr)
		}
	}

	voters := 0
	for _, srv := range cur {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}

	// Additions.
	alive := make([]Member, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		if m := byID[id]; m.State == StateAlive && m.RaftAddr != "" && id != self {
			alive = append(alive, m)
		}
	}
	for _, m := range alive {
		if _, ok := cur[m.ID]; ok {
			continue
		}
		if other, ok := s.serverAt(cur, m.RaftAddr); ok {
			if other == self {
				errs = append(errs, fmt.Errorf("raftstore: member %s claims this leader's address %s", m.ID, m.RaftAddr))
				continue
			}
			remove(other, "address taken by "+m.ID)
			if _, still := cur[other]; still {
				continue
			}
		}
		var f raft.IndexFuture
		suff := raft.Nonvoter
		if voters < rc.Voters && s.reachable(m) {
			suff = raft.Voter
			f = s.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, membershipBound)
		} else {
			f = s.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, membershipBound)
		}
		if err := f.Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: add %s at %s: %w", m.ID, m.RaftAddr, s.translate(err)))
			continue
		}
		if suff == raft.Voter {
			voters++
		}
		cur[m.ID] = raft.Server{Suffrage: suff, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)}
		s.log.Info("added raft server", "id", m.ID, "address", m.RaftAddr, "suffrage", suffrage(suff))
	}

	// Promotions.
	for _, m := range alive {
		if voters >= rc.Voters {
			break
		}
		srv, ok := cur[m.ID]
		if !ok || srv.Suffrage == raft.Voter || !s.reachable(m) {
			continue
		}
		if err := s.raft.AddVoter(srv.ID, srv.Address, 0, membershipBound).Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: promote %s: %w", m.ID, s.translate(err)))
			continue
		}
		voters++
		srv.Suffrage = raft.Voter
		cur[m.ID] = srv
		s.log.Info("promoted raft server to voter", "id", m.ID, "address", srv.Address)
	}
	return errors.Join(errs...)
}

// reachable guards every new vote: a voter that cannot be reached counts
// toward quorum all the same, and with one or two voters a wrong or
// firewalled raft address would leave the cluster without a leader for
// good. A member whose raft port does not accept a TCP connection is added
// as a non-voter (harmless to quorum) and promoted by a later reconcile.
// Called under reconcileMu; warns once per member and address.
func (s *Store) reachable(m Member) bool {
	c, err := net.DialTimeout("tcp", m.RaftAddr, reachableBound)
	if err != nil {
		if s.unreachable[m.ID] != m.RaftAddr {
			s.unreachable[m.ID] = m.RaftAddr
			s.log.Warn("raft address unreachable; not giving it a vote", "id", m.ID, "address", m.RaftAddr, "error", err)
		}
		return false
	}
	_ = c.Close()
	delete(s.unreachable, m.ID)
	return true
}

func (s *Store) serverAt(cur map[string]raft.Server, addr string) (string, bool) {
	ids := make([]string, 0, len(cur))
	for id, srv := range cur {
		if string(srv.Address) == addr {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return "", false
	}
	return ids[0], true
}
