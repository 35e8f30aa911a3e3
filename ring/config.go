package ring

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/buraksezer/consistent"
)

// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
var ErrInvalidConfig = errors.New("ring: invalid config")

const (
	// DefaultPartitionCount is 2039, a prime (consistent recommends primes:
	// key hash mod a prime has no common factor with any structure in the
	// hashes). It is fixed for the life of a cluster, so it is chosen
	// generously: the load bound works at partition granularity, and with
	// 2039 partitions a 50-member cluster still has about 40 partitions per
	// member and a 200-member one about 10, so the rounding in
	// ceil(average × Load) stays small and a single partition is 0.05% of
	// the keys. consistent's own default, 271, would leave 5 partitions per
	// member at 50 members. The cost is small: the owner table is 2039
	// entries (8 KiB) per kept version, and a Set costs well under a
	// millisecond at 10 members, tens of milliseconds at 200 (BenchmarkSet;
	// mostly consistent re-sorting its ring as it adds each member).
	DefaultPartitionCount = 2039

	// DefaultReplicationFactor is 100 virtual nodes per member. Measured over
	// joins from 2 to 50 members (TestReportMovedFraction), a join then moves
	// 1.02x the ideal 1/(N+1) of keys on average (max 1.27x), against 1.20x
	// (max 1.66x) with 40; a Set costs about 1 ms at 10 members.
	DefaultReplicationFactor = 100

	// DefaultLoad is consistent's own default bound, 1.25: no member owns
	// more than 25% above the average number of partitions.
	DefaultLoad = consistent.DefaultLoad

	// DefaultHistory keeps the four previous ring versions for peer fill.
	DefaultHistory = 4

	maxPartitionCount    = 1 << 20
	maxReplicationFactor = 1 << 12
	maxHistory           = 1 << 10
)

// Config configures a Ring. PartitionCount, ReplicationFactor and Load decide
// the owners, so every node of a cluster must use the same three values.
type Config struct {
	// PartitionCount is the number of partitions keys hash into. Fixed for
	// the life of a cluster; see DefaultPartitionCount for the choice.
	PartitionCount int

	// ReplicationFactor is the number of virtual nodes per member.
	ReplicationFactor int

	// Load is the bounded-load factor: no member owns more than
	// ceil(average × Load) partitions, unless that cannot be satisfied
	// (then the ring falls back to a looser bound and logs a warning).
	// Must be at least 1.
	Load float64

	// History is how many previous ring versions are kept for
	// PreviousOwners. Zero keeps none.
	History int

	// Logger receives the fallback warnings; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: 2039 partitions, 40 virtual nodes per
// member, load bound 1.25, 4 previous versions, no logger.
func DefaultConfig() Config {
	return Config{
		PartitionCount:    DefaultPartitionCount,
		ReplicationFactor: DefaultReplicationFactor,
		Load:              DefaultLoad,
		History:           DefaultHistory,
	}
}

// Validate reports every problem with c at once; each wraps ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.PartitionCount < 1 || c.PartitionCount > maxPartitionCount {
		bad("PartitionCount %d is not in [1, %d]", c.PartitionCount, maxPartitionCount)
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > maxReplicationFactor {
		bad("ReplicationFactor %d is not in [1, %d]", c.ReplicationFactor, maxReplicationFactor)
	}
	if math.IsNaN(c.Load) || math.IsInf(c.Load, 0) || c.Load < 1 {
		bad("Load %v must be a finite number >= 1", c.Load)
	}
	if c.History < 0 || c.History > maxHistory {
		bad("History %d is not in [0, %d]", c.History, maxHistory)
	}
	return errors.Join(errs...)
}
