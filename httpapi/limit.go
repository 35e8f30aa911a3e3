package httpapi

import (
	"errors"
	"net"
	"net/http"
	"sync"
)

var errTooManyRequests = errors.New("httpapi: too many concurrent requests from this address")

// clientLimiter caps concurrent requests per client address, so one
// misbehaving client (hf_transfer opens up to 100 ranged connections per
// file) cannot take every slot. Behind a load balancer every request comes
// from the balancer's address: set the cap accordingly, or 0 to disable.
type clientLimiter struct {
	max int

	mu     sync.Mutex
	active map[string]int
}

func newClientLimiter(max int) *clientLimiter {
	return &clientLimiter{max: max, active: map[string]int{}}
}

// acquire takes a slot for r's address; release must be called if it succeeds.
func (l *clientLimiter) acquire(r *http.Request) (release func(), ok bool) {
	if l == nil || l.max <= 0 {
		return func() {}, true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[host] >= l.max {
		return nil, false
	}
	l.active[host]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.active[host]--; l.active[host] <= 0 {
			delete(l.active, host)
		}
	}, true
}
