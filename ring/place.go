package ring

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// xxHasher is consistent's Hasher over xxhash.
type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// ringMember is a member as consistent sees it. consistent v0.10.0 names
// virtual node i of a member fmt.Sprintf("%s%d", String(), i), with no
// separator, so "node1" (index 10) and "node11" (index 0) would share ring
// positions and one would take the other's. String therefore ends in '#': the
// key is name#index, and since the index has no '#' the last '#' splits every
// key back into one name and one index.
type ringMember struct {
	token string // name + "#"
	idx   int32  // index in the sorted member list
}

func (m ringMember) String() string { return m.token }

// placement is the owner of every partition for one member set.
type placement struct {
	owners   []int32 // partition -> index in the sorted member list
	load     float64 // bound actually applied; +Inf when unbounded
	fallback string  // why the configured Load was not applied; "" if it was
}

// place puts cfg.PartitionCount partitions on members (sorted, distinct,
// non-empty). It never panics: it tries the configured Load, then the
// tightest bound that can hold every partition, then twice that, and finally
// plain unbounded consistent hashing.
func place(members []string, cfg Config) placement {
	var reasons []string
	load := cfg.Load
	if lmin := minLoad(cfg.PartitionCount, len(members)); load < lmin {
		// Known in advance to panic in consistent: skip the attempt.
		if math.IsInf(lmin, 1) {
			reasons = append(reasons, fmt.Sprintf("%d members exceed %d partitions", len(members), cfg.PartitionCount))
		} else {
			reasons = append(reasons, fmt.Sprintf("load %g cannot hold %d partitions on %d members", load, cfg.PartitionCount, len(members)))
		}
		load = lmin
	}
	if !math.IsInf(load, 1) {
		for _, l := range []float64{load, 2 * load} {
			owners, err := placeBounded(members, cfg, l)
			if err == nil {
				return placement{owners: owners, load: l, fallback: strings.Join(reasons, "; ")}
			}
			reasons = append(reasons, fmt.Sprintf("load %g: %v", l, err))
		}
	}
	return placement{
		owners:   placeUnbounded(members, cfg),
		load:     math.Inf(1),
		fallback: strings.Join(append(reasons, "placed unbounded"), "; "),
	}
}

// minLoad is the smallest Load under which consistent v0.10.0 has room for
// every partition. Its per-member bound is ceil(floor(p/m) × Load) (integer
// division), so it needs floor(p/m) × Load >= ceil(p/m); with more members
// than partitions the bound is 0 whatever the Load, reported as +Inf.
func minLoad(partitions, members int) float64 {
	q := partitions / members
	if q == 0 {
		return math.Inf(1)
	}
	return float64((partitions+members-1)/members) / float64(q)
}

// placeBounded places partitions with consistent under the given load,
// turning its panic into an error.
func placeBounded(members []string, cfg Config, load float64) (owners []int32, err error) {
	defer func() {
		if v := recover(); v != nil {
			owners, err = nil, fmt.Errorf("consistent: %v", v)
		}
	}()
	ms := make([]consistent.Member, len(members))
	for i, name := range members {
		ms[i] = ringMember{token: name + "#", idx: int32(i)}
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            xxHasher{},
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              load,
	})
	owners = make([]int32, cfg.PartitionCount)
	for p := range owners {
		m, ok := c.GetPartitionOwner(p).(ringMember)
		if !ok {
			return nil, fmt.Errorf("partition %d has no owner", p)
		}
		owners[p] = m.idx
	}
	return owners, nil
}

// placeUnbounded is consistent's placement without the load bound, computed
// here because consistent cannot do it when members outnumber partitions: the
// same virtual node keys and partition hashes, each partition going to the
// first virtual node at or after its hash.
func placeUnbounded(members []string, cfg Config) []int32 {
	type vnode struct {
		hash uint64
		idx  int32
	}
	vnodes := make([]vnode, 0, len(members)*cfg.ReplicationFactor)
	var buf []byte
	for i, name := range members {
		for v := range cfg.ReplicationFactor {
			buf = strconv.AppendInt(append(append(buf[:0], name...), '#'), int64(v), 10)
			vnodes = append(vnodes, vnode{hash: xxhash.Sum64(buf), idx: int32(i)})
		}
	}
	slices.SortFunc(vnodes, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.idx, b.idx))
	})
	owners := make([]int32, cfg.PartitionCount)
	var key [8]byte
	for p := range owners {
		binary.LittleEndian.PutUint64(key[:], uint64(p))
		h := xxhash.Sum64(key[:])
		j := sort.Search(len(vnodes), func(k int) bool { return vnodes[k].hash >= h })
		if j == len(vnodes) {
			j = 0
		}
		owners[p] = vnodes[j].idx
	}
	return owners
}
