package ring

import (
	"fmt"
	"testing"
)

func BenchmarkOwner(b *testing.B) {
	for _, m := range []int{3, 10, 50} {
		b.Run(fmt.Sprintf("members=%d", m), func(b *testing.B) {
			r := newRing(b, DefaultConfig())
			r.Set(names(m))
			ks := keys(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Owner(ks[i%len(ks)])
				i++
			}
		})
	}
}

func BenchmarkPreference(b *testing.B) {
	for _, c := range []struct{ members, n int }{{10, 3}, {50, 3}, {50, 50}} {
		b.Run(fmt.Sprintf("members=%d/n=%d", c.members, c.n), func(b *testing.B) {
			r := newRing(b, DefaultConfig())
			r.Set(names(c.members))
			ks := keys(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Preference(ks[i%len(ks)], c.n)
				i++
			}
		})
	}
}

func BenchmarkPreviousOwners(b *testing.B) {
	r := newRing(b, DefaultConfig())
	for m := 6; m <= 10; m++ {
		r.Set(names(m))
	}
	ks := keys(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.PreviousOwners(ks[i%len(ks)])
		i++
	}
}

// BenchmarkSet is the cost of one membership change (a new placement).
func BenchmarkSet(b *testing.B) {
	for _, m := range []int{3, 10, 50, 200} {
		b.Run(fmt.Sprintf("members=%d", m), func(b *testing.B) {
			r := newRing(b, DefaultConfig())
			sets := [][]string{names(m), names(m + 1)}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Set(sets[i%2])
				i++
			}
		})
	}
}
