package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// errDraining refuses a client request on a node that is shutting down.
var errDraining = errors.New("httpapi: the node is draining")

// Drain makes the client port refuse new client requests from now on: 503
// in the Hub's error shape, with Retry-After and Connection: close, so a
// balancer or client retries elsewhere. Requests under way go on; peer
// routes, health and readiness still answer (peers copy blobs from a
// draining node until it leaves the cluster).
func (c *Client) Drain() { c.draining.Store(true) }

// InFlight is how many client requests (and blob streams to peers) are
// being served.
func (c *Client) InFlight() int64 { return c.inflight.Load() }

// WaitIdle waits until no client request or blob stream to a peer is
// being served, or ctx ends.
func (c *Client) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for c.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// admitClient counts a client request in flight, or refuses it when the
// node drains; done ends the count.
func (c *Client) admitClient(w http.ResponseWriter) (ok bool) {
	c.inflight.Add(1) // before the check: WaitIdle never misses an admitted request
	if c.draining.Load() {
		c.inflight.Add(-1)
		h := w.Header()
		h.Set("Connection", "close")
		h.Set("Retry-After", "1")
		writeError(w, errDraining)
		return false
	}
	return true
}

// admitted ends what admitClient began.
func (c *Client) admitted() { c.inflight.Add(-1) }

// serveReady answers /-/ready: 200 when the node serves (Config.Ready),
// 503 with the reason otherwise.
func serveReady(w http.ResponseWriter, name string, ready func() error) {
	if ready != nil {
		if err := ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error(), "node": name})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": name})
}
