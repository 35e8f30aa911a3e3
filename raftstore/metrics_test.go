package raftstore

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// collected gathers a collector through a registry of its own: series
// name{label=value}... → value.
func collected(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry() // one per node, never the default
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestCollector: three nodes each report their own raft state, the
// configuration's voters, and the leader changes they saw, which grow
// when leadership moves.
func TestCollector(t *testing.T) {
	nodes := cluster(t, 3, fastRaft)
	l := leader(t, nodes...)
	before := l.s.LeaderChanges()
	if before == 0 {
		t.Fatal("no leader change counted")
	}
	for _, n := range nodes {
		got := collected(t, NewCollector(n.s))
		wantLeader := 0.0
		if n == l {
			wantLeader = 1
		}
		st := n.s.Status()
		for key, want := range map[string]float64{
			"hfcache_raft_state{state=leader}":     wantLeader,
			"hfcache_raft_state{state=follower}":   1 - wantLeader,
			"hfcache_raft_state{state=candidate}":  0,
			"hfcache_raft_has_leader":              1,
			"hfcache_raft_servers{suffrage=voter}": 3,
			"hfcache_raft_term":                    float64(st.Term),
			"hfcache_raft_leader_changes_total":    float64(n.s.LeaderChanges()),
		} {
			if got[key] != want {
				t.Errorf("%s: %s = %v, want %v", n.id, key, got[key], want)
			}
		}
		if got["hfcache_raft_last_index"] == 0 || got["hfcache_raft_applied_index"] == 0 || got["hfcache_raft_commit_index"] == 0 {
			t.Errorf("%s: indexes %v", n.id, got)
		}
	}
	if err := l.s.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new leader", func() bool {
		_, id := l.s.Leader()
		return id != "" && id != l.id
	})
	// The observer counts the change on its own goroutine, after raft's
	// view (Leader) already shows it: poll for it.
	waitFor(t, "the leader change counted", func() bool { return l.s.LeaderChanges() > before })
	if n := testutil.CollectAndCount(NewCollector(l.s)); n != 12 {
		t.Errorf("%d series, want 12", n)
	}
}
