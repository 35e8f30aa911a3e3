package ring

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Ring is the consistent-hash ring of a cluster. The zero value is not usable;
// call New. A Ring is safe for concurrent use: readers never wait for Set.
type Ring struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex // serializes Set
	snap atomic.Pointer[snapshot]
}

// snapshot is one immutable state of the ring: the current version and the
// kept previous ones.
type snapshot struct {
	cur     *table
	history []*table // most recent first, at most Config.History, never empty tables
}

// table is one ring version: who owns every partition.
type table struct {
	version  uint64
	members  []string // sorted, distinct
	owners   []int32  // partition -> index in members; nil when members is empty
	counts   []int32  // member index -> partitions owned
	load     float64  // bound applied; +Inf when unbounded
	fallback string   // why the configured Load was not applied
}

// New returns an empty ring (version 0, no members) after validating cfg.
func New(cfg Config) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Ring{cfg: cfg, log: log.With("component", "ring")}
	r.snap.Store(&snapshot{cur: &table{}})
	return r, nil
}

// Set replaces the member set with members (node names; order, duplicates and
// empty names do not matter) and returns the new version. A set equal to the
// current one changes nothing and returns the current version.
func (r *Ring) Set(members []string) uint64 {
	names := normalize(members)

	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if slices.Equal(names, old.cur.members) {
		return old.cur.version
	}

	t := &table{version: old.cur.version + 1, members: names}
	if len(names) > 0 {
		pl := place(names, r.cfg)
		t.owners, t.load, t.fallback = pl.owners, pl.load, pl.fallback
		t.counts = make([]int32, len(names))
		for _, m := range t.owners {
			t.counts[m]++
		}
		if t.fallback != "" {
			r.log.Warn("ring: load bound relaxed",
				"version", t.version, "members", len(names),
				"partitions", r.cfg.PartitionCount, "load", r.cfg.Load,
				"applied_load", t.load, "reason", t.fallback)
		}
	}

	// An empty ring owns nothing, so it is never kept as a previous version.
	history := old.history
	if len(old.cur.members) > 0 {
		history = append([]*table{old.cur}, history...)
	}
	if len(history) > r.cfg.History {
		history = slices.Clip(history[:r.cfg.History])
	}
	r.snap.Store(&snapshot{cur: t, history: history})
	r.log.Debug("ring: new version", "version", t.version, "members", len(names))
	return t.version
}

// normalize returns members sorted, without duplicates and empty names, in a
// new slice.
func normalize(members []string) []string {
	names := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			names = append(names, m)
		}
	}
	slices.Sort(names)
	return slices.Clip(slices.Compact(names))
}

// Version returns the current ring version: 0 for a new ring, then one more
// for every Set that changed the member set.
func (r *Ring) Version() uint64 { return r.snap.Load().cur.version }

// Members returns the current members, sorted.
func (r *Ring) Members() []string { return slices.Clone(r.snap.Load().cur.members) }

// Owner returns the member that owns key, or false on an empty ring.
func (r *Ring) Owner(key string) (string, bool) {
	return r.snap.Load().cur.owner(r.partition(key))
}

// Preference returns up to n distinct members in the order they should serve
// key: the owner first, then the owners of the following partitions. Its
// length is min(n, members); it is nil on an empty ring or when n <= 0.
func (r *Ring) Preference(key string, n int) []string {
	return r.snap.Load().cur.preference(r.partition(key), n)
}

// PreviousOwners returns the members that owned key in the kept previous ring
// versions and do not own it now, most recent first, without duplicates. They
// may have left the cluster since.
func (r *Ring) PreviousOwners(key string) []string {
	s := r.snap.Load()
	p := r.partition(key)
	cur, _ := s.cur.owner(p)
	var out []string
	for _, t := range s.history {
		o, ok := t.owner(p)
		if ok && o != cur && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// Share returns the fraction of partitions member owns, 0 if it is not a
// member.
func (r *Ring) Share(member string) float64 {
	t := r.snap.Load().cur
	i, ok := slices.BinarySearch(t.members, member)
	if !ok {
		return 0
	}
	return float64(t.counts[i]) / float64(len(t.owners))
}

// partition is the partition of key, as consistent.FindPartitionID computes
// it with the xxhash hasher.
func (r *Ring) partition(key string) int {
	return int(xxhash.Sum64String(key) % uint64(r.cfg.PartitionCount))
}

func (t *table) owner(p int) (string, bool) {
	if len(t.members) == 0 {
		return "", false
	}
	return t.members[t.owners[p]], true
}

// preference walks the partition table from p, collecting distinct owners.
// Members that own no partition (possible only with very many members) come
// last, in name order.
func (t *table) preference(p, n int) []string {
	n = min(n, len(t.members))
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	var seen []bool // for long lists; short ones scan out
	if n > 8 {
		seen = make([]bool, len(t.members))
	}
	parts := len(t.owners)
	for step := 0; step < parts && len(out) < n; step++ {
		i := t.owners[(p+step)%parts]
		if seen != nil {
			if seen[i] {
				continue
			}
			seen[i] = true
		} else if slices.Contains(out, t.members[i]) {
			continue
		}
		out = append(out, t.members[i])
	}
	for i, m := range t.members {
		if len(out) == n {
			break
		}
		if t.counts[i] == 0 {
			out = append(out, m)
		}
	}
	return out
}
