package raftstore

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// observeLeaders counts the leaders raft reports (a change of leader,
// including this node's own elections), for LeaderChanges. The goroutine
// is owned by the store: it ends with Shutdown.
func (s *Store) observeLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		l, ok := o.Data.(raft.LeaderObservation)
		return ok && l.LeaderID != ""
	})
	s.raft.RegisterObserver(obs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.raft.DeregisterObserver(obs)
		for {
			select {
			case <-ch:
				s.leaderChanges.Add(1)
			case <-s.ctx.Done():
				return
			}
		}
	}()
}

// LeaderChanges is how many times this node has seen a new leader since
// it started.
func (s *Store) LeaderChanges() uint64 { return s.leaderChanges.Load() }

// collector reports Status at every scrape.
type collector struct {
	s *Store

	state, term, lastIndex, applied, commit, hasLeader, servers, leaderChanges *prometheus.Desc
}

// NewCollector is a Prometheus collector of s's raft state, for the node's
// own registry.
func NewCollector(s *Store) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		s:             s,
		state:         d("hfcache_raft_state", "1 for this node's raft state (follower, candidate, leader, shutdown), 0 for the others.", "state"),
		term:          d("hfcache_raft_term", "This node's current raft term."),
		lastIndex:     d("hfcache_raft_last_index", "The last index in this node's raft log."),
		applied:       d("hfcache_raft_applied_index", "The last raft index applied to this node's configuration."),
		commit:        d("hfcache_raft_commit_index", "The last raft index this node knows committed."),
		hasLeader:     d("hfcache_raft_has_leader", "1 when this node knows a raft leader."),
		servers:       d("hfcache_raft_servers", "Servers in the raft configuration, by suffrage.", "suffrage"),
		leaderChanges: d("hfcache_raft_leader_changes_total", "New raft leaders this node has seen since it started."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.term, c.lastIndex, c.applied, c.commit, c.hasLeader, c.servers, c.leaderChanges} {
		ch <- d
	}
}

var raftStates = []string{"follower", "candidate", "leader", "shutdown"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range raftStates {
		g(c.state, b2f(st.State == s), s)
	}
	g(c.term, float64(st.Term))
	g(c.lastIndex, float64(st.LastIndex))
	g(c.applied, float64(st.AppliedIndex))
	g(c.commit, float64(st.CommitIndex))
	g(c.hasLeader, b2f(st.LeaderID != ""))
	voters, nonvoters := 0, 0
	for _, srv := range st.Servers {
		if srv.Suffrage == "voter" {
			voters++
		} else {
			nonvoters++
		}
	}
	g(c.servers, float64(voters), "voter")
	g(c.servers, float64(nonvoters), "nonvoter")
	ch <- prometheus.MustNewConstMetric(c.leaderChanges, prometheus.CounterValue, float64(c.s.LeaderChanges()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
