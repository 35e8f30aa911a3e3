package hf

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// The hand-written checks accept exactly what the Hub's patterns do.
func TestChecksMatchPatterns(t *testing.T) {
	segment := regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$`)
	hex := map[int]*regexp.Regexp{40: regexp.MustCompile(`^[0-9a-f]{40}$`), 64: regexp.MustCompile(`^[0-9a-f]{64}$`)}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09._-/ %\x00é"
	const hexdigits = "0123456789abcdefABg"
	for range 200000 {
		b := make([]byte, rng.IntN(100))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		s := string(b)
		if got, want := validRepoSegment(s), segment.MatchString(s); got != want {
			t.Fatalf("validRepoSegment(%q) = %v, pattern says %v", s, got, want)
		}
		n := []int{40, 64}[rng.IntN(2)]
		h := make([]byte, n+rng.IntN(3)-1)
		for i := range h {
			h[i] = hexdigits[rng.IntN(len(hexdigits)-3*min(1, rng.IntN(40)))]
		}
		if got, want := isLowerHex(string(h), n), hex[n].MatchString(string(h)); got != want {
			t.Fatalf("isLowerHex(%q, %d) = %v, pattern says %v", h, n, got, want)
		}
	}
	for _, s := range []string{"a", "a_", "a.b", "a-", "a.", "-a", strings96('x'), strings96('x') + "x"} {
		if got, want := validRepoSegment(s), segment.MatchString(s); got != want {
			t.Errorf("validRepoSegment(%q) = %v, pattern says %v", s, got, want)
		}
	}
}

func strings96(c byte) string {
	b := make([]byte, 96)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
