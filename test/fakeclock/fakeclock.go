// Package fakeclock is a clock that a test moves by hand: its Now goes
// where a component takes a clock (a Config's Now), and Advance moves it.
// It is safe for concurrent use, since the components under test read it
// from their own goroutines.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a hand-moved clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock that reads start until it is advanced.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
