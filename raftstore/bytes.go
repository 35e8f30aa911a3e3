package raftstore

import (
	"fmt"
	"math/big"
	"strings"
)

// byteUnits maps a (lower-cased) unit to its multiplier. SI prefixes are
// powers of 1000, IEC ("KiB", or Kubernetes-style "Ki") powers of 1024;
// a bare number is bytes.
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
	"t": 1e12, "tb": 1e12, "p": 1e15, "pb": 1e15, "e": 1e18, "eb": 1e18,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
	"gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
	"pi": 1 << 50, "pib": 1 << 50, "ei": 1 << 60, "eib": 1 << 60,
}

// ParseBytes parses a byte size: "1048576", "500GiB", "1.5TB", "10 MB".
// Units are case-insensitive; KB/MB/GB/TB/PB/EB (and K/M/G/...) are
// decimal, KiB/MiB/GiB/TiB/PiB/EiB (and Ki/Mi/...) binary. The result is
// rounded down to whole bytes; negative sizes and overflows are errors.
func ParseBytes(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, fmt.Errorf("invalid byte size %q", in)
	}
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid byte size %q: unknown unit %q", in, unit)
	}
	// Exact decimal arithmetic: "1.5TB" is 1500000000000, not a float's
	// nearest neighbour.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid byte size %q", in)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid byte size %q: too large", in)
	}
	return n.Int64(), nil
}
