package membership

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinLoop owns the background joining. First, if there are seeds, it
// joins them until another member is known, with exponential backoff
// (JoinRetryMin doubling up to JoinRetryMax, ±20% jitter).
//
// A seed list commonly names this node too, and a node contacting itself
// "succeeds"; so the first phase goes on until the view holds a member other
// than this node (or another node joins this one first). Nodes started
// together with the same seeds thus cannot settle into separate clusters of
// one.
//
// Then it reconnects (see reconnect) every JoinRetryMax, and sooner after
// a member is declared dead: JoinRetryMin later, then with the delay
// doubling back up to JoinRetryMax. A short partition thus heals within
// about its own length, while members that stay dead cost one attempt per
// JoinRetryMax.
func (m *Membership) joinLoop(ctx context.Context, list *memberlist.Memberlist) {
	defer close(m.joinDone)
	if len(m.cfg.Join) > 0 && !m.joinSeeds(ctx, list) {
		return
	}
	delay := m.cfg.JoinRetryMax
	wait := jitter(delay)
	due := time.Now().Add(wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.view.deaths:
			// Sooner, never later: a stream of deaths cannot postpone it.
			delay = m.cfg.JoinRetryMin
			if wait := jitter(delay); time.Until(due) > wait {
				due = time.Now().Add(wait)
				timer.Reset(wait)
			}
			continue
		case <-timer.C:
		}
		m.reconnect(list)
		delay = min(2*delay, m.cfg.JoinRetryMax)
		wait := jitter(delay)
		due = time.Now().Add(wait)
		timer.Reset(wait)
	}
}

// joinSeeds is the first phase of joinLoop; false if ctx ended first.
func (m *Membership) joinSeeds(ctx context.Context, list *memberlist.Memberlist) bool {
	seeds := m.cfg.Join
	delay := m.cfg.JoinRetryMin
	for attempt := 1; ; attempt++ {
		if n := list.NumMembers(); n > 1 {
			m.logger.Info("joined the cluster", "members", n, "attempts", attempt-1)
			return true
		}
		contacted, err := list.Join(seeds)
		if ctx.Err() != nil {
			return false
		}
		if n := list.NumMembers(); n > 1 {
			m.logger.Info("joined the cluster", "members", n, "seeds_answered", contacted, "attempts", attempt)
			return true
		}
		wait := jitter(delay)
		switch {
		case err != nil && secretMismatch(err):
			m.logger.Warn("cannot join the cluster: a seed refused our gossip (cluster secret mismatch?); retrying",
				"seeds", seeds, "attempt", attempt, "retry_in", wait, "err", flatten(err))
		case err != nil:
			m.logger.Warn("cannot join the cluster yet: no seed answered; retrying",
				"seeds", seeds, "attempt", attempt, "retry_in", wait, "err", flatten(err))
		case attempt == 1:
			m.logger.Info("only this node answered among the seeds; waiting for others",
				"seeds", seeds, "retry_in", wait)
		default:
			m.logger.Debug("only this node answered among the seeds; waiting for others",
				"seeds", seeds, "attempt", attempt, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		delay = min(2*delay, m.cfg.JoinRetryMax)
	}
}

// reconnect heals partitions and finds restarted members. memberlist stops
// probing a member once it is declared dead, so two halves of a partition
// that lasted longer than the suspicion timeout never hear of each other
// again. reconnect pushes and pulls state with the members this node has
// seen dead (not left) in the last day, and with the seeds when this node is
// alone; a member that answers is merged back (it refutes its death).
func (m *Membership) reconnect(list *memberlist.Memberlist) {
	var addrs []string
	for _, mem := range m.view.snapshot() {
		if mem.State == StateDead && !mem.Self {
			addrs = append(addrs, mem.Addr)
		}
	}
	dead := len(addrs)
	if list.NumMembers() <= 1 {
		addrs = append(addrs, m.cfg.Join...)
	}
	if len(addrs) == 0 {
		return
	}
	contacted, err := list.Join(addrs)
	attrs := []any{"dead_members", dead, "tried", len(addrs), "answered", contacted}
	if err != nil {
		attrs = append(attrs, "err", flatten(err))
	}
	m.logger.Debug("reconnect", attrs...)
}

// secretMismatch says whether a join failed on encryption: the seed could
// not decrypt our state or we its answer (different secrets), or one side
// encrypts and the other does not.
func secretMismatch(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "crypt")
}

// jitter spreads d by ±20% so restarted nodes do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	spread := int64(d) / 5
	if spread == 0 {
		return d
	}
	return d - time.Duration(spread) + time.Duration(rand.Int64N(2*spread+1))
}

// flatten puts memberlist's multi-line multierror on one line.
func flatten(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
