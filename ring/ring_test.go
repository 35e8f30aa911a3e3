package ring

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buraksezer/consistent"
)

// names returns n member names node-1 .. node-n (unpadded on purpose: node-1
// and node-11 are the names consistent's virtual node keys would confuse).
func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i+1)
	}
	return out
}

// keys returns n blob-ID-like keys (hex SHA-256), the same on every call.
func keys(n int) []string {
	out := make([]string, n)
	var b [8]byte
	for i := range out {
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		sum := sha256.Sum256(b[:])
		out[i] = hex.EncodeToString(sum[:])
	}
	return out
}

func newRing(t testing.TB, cfg Config) *Ring {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func owners(t testing.TB, r *Ring, ks []string) []string {
	t.Helper()
	out := make([]string, len(ks))
	for i, k := range ks {
		o, ok := r.Owner(k)
		if !ok {
			t.Fatalf("Owner(%q): no owner on a ring of %d members", k, len(r.Members()))
		}
		out[i] = o
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	bad := Config{PartitionCount: 0, ReplicationFactor: -1, Load: math.NaN(), History: -1}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
	}
	for _, field := range []string{"PartitionCount", "ReplicationFactor", "Load", "History"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %q, does not report %s", err, field)
		}
	}
	for _, load := range []float64{0, 0.99, math.Inf(1)} {
		cfg := DefaultConfig()
		cfg.Load = load
		if err := cfg.Validate(); err == nil {
			t.Errorf("Load %v accepted", load)
		}
	}
	if _, err := New(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(bad) error = %v, want ErrInvalidConfig", err)
	}
}

func TestDeterministicOwners(t *testing.T) {
	ks := keys(10_000)
	members := names(10)
	base := newRing(t, DefaultConfig())
	base.Set(members)
	want := owners(t, base, ks)

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5 {
		shuffled := slices.Clone(members)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if i%2 == 1 {
			shuffled = append(shuffled, shuffled[:3]...) // duplicates change nothing
		}
		r := newRing(t, DefaultConfig())
		r.Set(shuffled)
		if got := owners(t, r, ks); !slices.Equal(got, want) {
			t.Fatalf("shuffle %d (%v): owners differ from sorted order", i, shuffled)
		}
		for _, k := range ks[:1000] {
			if a, b := r.Preference(k, 4), base.Preference(k, 4); !slices.Equal(a, b) {
				t.Fatalf("shuffle %d: Preference(%q) = %v, want %v", i, k, a, b)
			}
		}
	}
}

// TestPartitionMatchesConsistent checks that Owner hashes keys exactly as
// consistent.FindPartitionID does.
func TestPartitionMatchesConsistent(t *testing.T) {
	cfg := DefaultConfig()
	r := newRing(t, cfg)
	c := consistent.New(nil, consistent.Config{Hasher: xxHasher{}, PartitionCount: cfg.PartitionCount})
	for _, k := range keys(1000) {
		if got, want := r.partition(k), c.FindPartitionID([]byte(k)); got != want {
			t.Fatalf("partition(%q) = %d, consistent says %d", k, got, want)
		}
	}
}

func TestLoadBound(t *testing.T) {
	cfg := DefaultConfig()
	r := newRing(t, cfg)
	for m := 1; m <= 50; m++ {
		r.Set(names(m))
		tab := r.snap.Load().cur
		if tab.fallback != "" {
			t.Errorf("members=%d: fallback with the default config: %s", m, tab.fallback)
		}
		avg := float64(cfg.PartitionCount) / float64(m)
		bound := int32(math.Ceil(avg * cfg.Load))
		maxLoad, total, share := int32(0), int32(0), 0.0
		for i, c := range tab.counts {
			maxLoad = max(maxLoad, c)
			total += c
			share += r.Share(tab.members[i])
		}
		if total != int32(cfg.PartitionCount) {
			t.Fatalf("members=%d: %d partitions placed, want %d", m, total, cfg.PartitionCount)
		}
		if math.Abs(share-1) > 1e-9 {
			t.Errorf("members=%d: shares sum to %v", m, share)
		}
		if maxLoad > bound {
			t.Errorf("members=%d: a member owns %d partitions, bound ceil(%.2f×%.2f) = %d", m, maxLoad, avg, cfg.Load, bound)
		}
		if m%10 == 0 || m <= 3 {
			t.Logf("members=%d: max %d partitions per member, average %.1f, bound %d", m, maxLoad, avg, bound)
		}
	}
	if got := r.Share("not-a-member"); got != 0 {
		t.Errorf("Share(non-member) = %v", got)
	}
}

// movedFraction is the fraction of ks whose owner differs between a and b.
func movedFraction(t *testing.T, a, b *Ring, ks []string) float64 {
	before, after := owners(t, a, ks), owners(t, b, ks)
	moved := 0
	for i := range ks {
		if before[i] != after[i] {
			moved++
		}
	}
	return float64(moved) / float64(len(ks))
}

// TestMovedFraction measures how many keys change owner when a member joins
// (N→N+1) or leaves (N+1→N); ideally 1/(N+1). Run with
// go test -v -run Moved ./ring/ to see the numbers.
func TestMovedFraction(t *testing.T) {
	ks := keys(100_000)
	for _, n := range []int{3, 10, 30} {
		small, large := newRing(t, DefaultConfig()), newRing(t, DefaultConfig())
		small.Set(names(n))
		large.Set(names(n + 1))
		ideal := 1 / float64(n+1)

		joined := movedFraction(t, small, large, ks)
		t.Logf("moved N=%d→%d: %.4f (ideal %.4f)", n, n+1, joined, ideal)

		// A leave of a member other than the newest one.
		left := newRing(t, DefaultConfig())
		left.Set(names(n + 1)[1:])
		departed := movedFraction(t, large, left, ks)
		t.Logf("moved N=%d→%d: %.4f (ideal %.4f, node-1 leaves)", n+1, n, departed, ideal)

		for what, f := range map[string]float64{"join": joined, "leave": departed} {
			if f < 0.5*ideal || f > 1.6*ideal {
				t.Errorf("N=%d %s: moved %.4f of keys, want within (%.4f, %.4f)", n, what, f, 0.5*ideal, 1.6*ideal)
			}
		}
	}
}

// TestReportMovedFraction prints the join fraction for every N from 2 to 50
// and a summary, without asserting: a join moves about the new member's
// share, which varies from member to member, so single values scatter around
// the ideal. It runs only with -v (go test -v -run Moved ./ring/).
func TestReportMovedFraction(t *testing.T) {
	if !testing.Verbose() {
		t.Skip("a report; run with -v")
	}
	ks := keys(100_000)
	prev := newRing(t, DefaultConfig())
	prev.Set(names(2))
	var ratios []float64
	for n := 2; n <= 50; n++ {
		next := newRing(t, DefaultConfig())
		next.Set(names(n + 1))
		f, ideal := movedFraction(t, prev, next, ks), 1/float64(n+1)
		t.Logf("moved N=%d→%d: %.4f (ideal %.4f, ratio %.2f)", n, n+1, f, ideal, f/ideal)
		ratios = append(ratios, f/ideal)
		prev = next
	}
	slices.Sort(ratios)
	mean := 0.0
	for _, r := range ratios {
		mean += r / float64(len(ratios))
	}
	t.Logf("moved/ideal over N=2..50: mean %.2f, min %.2f, median %.2f, max %.2f",
		mean, ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1])
}

func TestPreference(t *testing.T) {
	ks := keys(2000)
	for _, m := range []int{1, 2, 3, 10, 50} {
		r := newRing(t, DefaultConfig())
		r.Set(names(m))
		other := newRing(t, DefaultConfig())
		other.Set(names(m))
		for _, k := range ks {
			owner, _ := r.Owner(k)
			for _, n := range []int{1, 2, 3, m, m + 5} {
				p := r.Preference(k, n)
				if len(p) != min(n, m) {
					t.Fatalf("m=%d: len(Preference(%q, %d)) = %d, want %d", m, k, n, len(p), min(n, m))
				}
				if p[0] != owner {
					t.Fatalf("m=%d: Preference(%q, %d)[0] = %s, owner is %s", m, k, n, p[0], owner)
				}
				if s := slices.Compact(slices.Sorted(slices.Values(p))); len(s) != len(p) {
					t.Fatalf("m=%d: Preference(%q, %d) = %v has duplicates", m, k, n, p)
				}
				if q := other.Preference(k, n); !slices.Equal(p, q) {
					t.Fatalf("m=%d: Preference(%q, %d) = %v on one ring, %v on another", m, k, n, p, q)
				}
				if short := r.Preference(k, n-1); !slices.Equal(short, p[:len(short)]) {
					t.Fatalf("m=%d: Preference(%q, %d) = %v is not a prefix of %v", m, k, n-1, short, p)
				}
			}
		}
		for _, n := range []int{0, -1} {
			if p := r.Preference(ks[0], n); p != nil {
				t.Errorf("Preference(key, %d) = %v, want nil", n, p)
			}
		}
	}
}

// TestPreferenceSpreads checks that the keys of one owner do not all fall
// back to the same second member, as they would with consistent.GetClosestN.
func TestPreferenceSpreads(t *testing.T) {
	r := newRing(t, DefaultConfig())
	r.Set(names(10))
	seconds := map[string]map[string]int{} // owner -> second -> keys
	for _, k := range keys(20_000) {
		p := r.Preference(k, 2)
		if seconds[p[0]] == nil {
			seconds[p[0]] = map[string]int{}
		}
		seconds[p[0]][p[1]]++
	}
	for owner, s := range seconds {
		if len(s) < 8 {
			t.Errorf("keys of %s fall back to only %d members: %v", owner, len(s), s)
		}
	}
}

// TestPreviousOwners replays membership changes and checks PreviousOwners
// against a model that keeps every version.
func TestPreviousOwners(t *testing.T) {
	ks := keys(3000)
	steps := [][]string{
		{"a", "b", "c"},
		{"a", "b", "c", "d"},
		{"a", "b", "c"},
		{"a", "b", "c", "d", "e"},
		{"b", "c", "d", "e"},
		{},
		{"b", "c", "d", "e"},
		{"x"},
		{"b", "c", "d", "e", "f", "g"},
	}
	for _, history := range []int{0, 1, 2, 4} {
		cfg := DefaultConfig()
		cfg.History = history
		r := newRing(t, cfg)
		var versions [][]string // owners per non-empty version, oldest first
		for i, members := range steps {
			r.Set(members)
			if got := len(r.snap.Load().history); got > history {
				t.Fatalf("History=%d step %d: %d versions kept", history, i, got)
			}
			cur := make([]string, len(ks)) // "" on the empty ring
			if len(members) > 0 {
				cur = owners(t, r, ks)
			}
			kept := versions[max(0, len(versions)-history):]
			for j, k := range ks {
				var want []string
				for v := len(kept) - 1; v >= 0; v-- {
					if o := kept[v][j]; o != cur[j] && !slices.Contains(want, o) {
						want = append(want, o)
					}
				}
				if got := r.PreviousOwners(k); !slices.Equal(got, want) {
					t.Fatalf("History=%d step %d (%v): PreviousOwners(%q) = %v, want %v", history, i, members, k, got, want)
				}
			}
			if len(members) > 0 { // an empty ring is not kept
				versions = append(versions, cur)
			}
		}
	}
}

func TestSetVersions(t *testing.T) {
	r := newRing(t, DefaultConfig())
	if v := r.Version(); v != 0 {
		t.Fatalf("new ring version %d", v)
	}
	if v := r.Set(nil); v != 0 {
		t.Fatalf("Set(nil) on an empty ring = %d, want 0 (no-op)", v)
	}
	if v := r.Set([]string{"b", "a"}); v != 1 || r.Version() != 1 {
		t.Fatalf("Set = %d, Version = %d, want 1", v, r.Version())
	}
	if v := r.Set([]string{"a", "b", "a", ""}); v != 1 {
		t.Fatalf("same set again = version %d, want 1", v)
	}
	if got := r.Members(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Members() = %v", got)
	}
	r.Members()[0] = "mutated"
	if got := r.Members(); got[0] != "a" {
		t.Fatalf("Members() shares its slice with the ring")
	}
	if v := r.Set([]string{"a"}); v != 2 {
		t.Fatalf("Set after a change = %d, want 2", v)
	}
	if v := r.Set(nil); v != 3 || len(r.Members()) != 0 {
		t.Fatalf("Set(nil) = %d with members %v, want 3 and none", v, r.Members())
	}
}

func TestNoPanic(t *testing.T) {
	tight := DefaultConfig()
	tight.Load = 1
	oneVnode := DefaultConfig()
	oneVnode.ReplicationFactor = 1
	fewParts := DefaultConfig()
	fewParts.PartitionCount = 7

	tests := []struct {
		name     string
		cfg      Config
		members  []string
		fallback bool // the configured load cannot be applied
	}{
		{"nil", DefaultConfig(), nil, false},
		{"empty", DefaultConfig(), []string{}, false},
		{"only empty names", DefaultConfig(), []string{"", ""}, false},
		{"one member", DefaultConfig(), []string{"solo"}, false},
		{"two members tight load", tight, names(2), true},
		{"200 members", DefaultConfig(), names(200), false},
		{"duplicates", DefaultConfig(), []string{"a", "b", "a", "b", "c", "a"}, false},
		{"one member one vnode", oneVnode, []string{"solo"}, true},
		{"members outnumber partitions", fewParts, names(20), true},
		{"3000 members", DefaultConfig(), names(3000), true},
	}
	ks := keys(500)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tt.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			r := newRing(t, tt.cfg)
			r.Set(tt.members)
			want := normalize(tt.members)
			if got := r.Members(); !slices.Equal(got, want) {
				t.Fatalf("Members() = %v, want %v", got, want)
			}
			tab := r.snap.Load().cur
			if (tab.fallback != "") != tt.fallback {
				t.Errorf("fallback = %q, want one: %v", tab.fallback, tt.fallback)
			}
			if warnings := strings.Count(logs.String(), "load bound relaxed"); warnings != map[bool]int{true: 1}[tt.fallback] {
				t.Errorf("%d fallback warnings logged:\n%s", warnings, logs.String())
			}
			if tab.fallback != "" {
				t.Logf("fallback: applied load %v: %s", tab.load, tab.fallback)
			}
			for _, k := range ks {
				o, ok := r.Owner(k)
				if ok != (len(want) > 0) || (ok && !slices.Contains(want, o)) {
					t.Fatalf("Owner(%q) = %q, %v with members %v", k, o, ok, want)
				}
				p := r.Preference(k, len(want)+1)
				if len(p) != len(want) || (ok && p[0] != o) {
					t.Fatalf("Preference(%q) = %v, owner %q, members %d", k, p, o, len(want))
				}
				if s := slices.Compact(slices.Sorted(slices.Values(p))); len(s) != len(p) {
					t.Fatalf("Preference(%q) has duplicates", k)
				}
				_ = r.PreviousOwners(k)
			}
			if len(want) > 0 && !math.IsInf(tab.load, 1) {
				bound := int32(math.Ceil(float64(tt.cfg.PartitionCount/len(want)) * tab.load))
				if m := slices.Max(tab.counts); m > bound {
					t.Errorf("a member owns %d partitions, applied bound %d", m, bound)
				}
			}
		})
	}
}

// TestTightLoadFallback checks that a load that cannot hold every partition
// is relaxed to the tightest one that can, not straight to unbounded.
func TestTightLoadFallback(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Load = 1
	r := newRing(t, cfg)
	r.Set(names(2)) // 2039 partitions: 1019 + 1019 < 2039
	tab := r.snap.Load().cur
	if math.IsInf(tab.load, 1) || tab.load > 1.01 {
		t.Fatalf("applied load %v, want just above 1", tab.load)
	}
	if got := slices.Max(tab.counts); got != 1020 {
		t.Fatalf("max partitions per member %d, want 1020", got)
	}
}

// TestVnodeKeysDistinct checks that the '#' in ringMember.String keeps the
// virtual node keys consistent builds (fmt.Sprintf("%s%d", String(), i))
// distinct, where the bare names would collide.
func TestVnodeKeysDistinct(t *testing.T) {
	seen, bare := map[string]bool{}, map[string]bool{}
	collisions := 0
	for _, name := range names(200) {
		m := ringMember{token: name + "#"}
		for i := range DefaultReplicationFactor {
			key := fmt.Sprintf("%s%d", m.String(), i)
			if seen[key] {
				t.Fatalf("virtual node key %q built twice", key)
			}
			seen[key] = true
			raw := fmt.Sprintf("%s%d", name, i)
			if bare[raw] {
				collisions++
			}
			bare[raw] = true
		}
	}
	if collisions == 0 {
		t.Fatalf("expected bare names to collide (node-1 #10 = node-11 #0)")
	}
}

// TestUnboundedMatchesConsistent checks that the last-resort placement is
// what consistent computes when the bound never binds.
func TestUnboundedMatchesConsistent(t *testing.T) {
	cfg := DefaultConfig()
	for _, m := range []int{1, 7, 50} {
		members := names(m)
		bounded, err := placeBounded(members, cfg, 1e9)
		if err != nil {
			t.Fatalf("placeBounded: %v", err)
		}
		if unbounded := placeUnbounded(members, cfg); !slices.Equal(bounded, unbounded) {
			t.Fatalf("members=%d: unbounded placement differs from consistent's", m)
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	cfg := DefaultConfig()
	cfg.History = 2
	r := newRing(t, cfg)
	ks := keys(1000)
	sets := [][]string{names(3), names(5), nil, names(12), {"a", "node-1"}, names(1)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := ks[i%len(ks)]
				p := r.Preference(k, 3)
				if s := slices.Compact(slices.Sorted(slices.Values(p))); len(s) != len(p) || len(p) > 3 {
					t.Errorf("Preference(%q) = %v", k, p)
					return
				}
				if o, ok := r.Owner(k); ok && o == "" {
					t.Errorf("Owner(%q) is empty", k)
					return
				}
				prev := r.PreviousOwners(k)
				if len(prev) > cfg.History {
					t.Errorf("PreviousOwners(%q) = %v, more than History", k, prev)
					return
				}
				_ = r.Share("node-1")
				_ = r.Members()
				_ = r.Version()
			}
		})
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	var last uint64
	for i := 0; time.Now().Before(deadline); i++ {
		v := r.Set(sets[i%len(sets)])
		if v < last {
			t.Fatalf("version went back from %d to %d", last, v)
		}
		last = v
	}
	close(stop)
	wg.Wait()
}
