package main

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/httpapi/h1"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/ring"
)

// handOffBlobs is how many of its most served blobs a draining node hands
// to their next owners.
const handOffBlobs = 16

// drain is the first part of a graceful stop (SIGTERM), before the node
// leaves the cluster: readiness goes false at once; after grace, new client
// requests are refused (503, Connection: close) and keep-alives end; the
// requests under way finish, within timeout after grace; meanwhile the most
// served owned blobs are handed to their next owners. Peer routes keep
// answering throughout: the next owners copy from this node. A closed
// hurry (a second signal) cuts every wait short.
type drain struct {
	log      *slog.Logger
	grace    time.Duration
	timeout  time.Duration
	hurry    <-chan struct{}
	draining *atomic.Bool
	api      *httpapi.Client
	servers  []keepAliveSetter // the client port's: keep-alives end after grace
	node     *node.Node
	ringCfg  ring.Config
	self     string
}

// keepAliveSetter is what serves the client port: the http.Server and,
// on plain HTTP, its fast path.
type keepAliveSetter interface{ SetKeepAlivesEnabled(bool) }

func keepAliveSetters(srv *http.Server, fast *h1.Listener) []keepAliveSetter {
	if fast == nil {
		return []keepAliveSetter{srv}
	}
	return []keepAliveSetter{srv, fast}
}

func (d *drain) run() {
	start := time.Now()
	d.draining.Store(true)
	d.log.Info("draining: not ready; refusing new requests after the grace period",
		"grace", d.grace, "timeout", d.timeout, "in_flight", d.api.InFlight())
	ctx, cancel := context.WithTimeout(context.Background(), d.grace+d.timeout)
	defer cancel()
	go func() {
		select {
		case <-d.hurry:
			d.log.Warn("draining cut short by a second signal")
			cancel()
		case <-ctx.Done():
		}
	}()

	handed := make(chan []node.HandedOff, 1)
	go func() { handed <- d.node.HandOff(ctx, handOffBlobs, d.nextOwner()) }()

	t := time.NewTimer(d.grace)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	d.api.Drain()
	for _, s := range d.servers {
		s.SetKeepAlivesEnabled(false)
	}
	d.log.Info("draining: refusing new client requests", "in_flight", d.api.InFlight())

	if err := d.api.WaitIdle(ctx); err != nil {
		d.log.Warn("draining: requests still under way are cut", "in_flight", d.api.InFlight(), "err", err)
	}
	res := <-handed
	ok := 0
	for _, h := range res {
		if h.Err == "" {
			ok++
		}
	}
	d.log.Info("drained", "took", time.Since(start).Round(time.Millisecond), "handed_off", ok, "hand_off_tried", len(res))
}

// nextOwner names a key's owner on the ring as it will be without this
// node.
func (d *drain) nextOwner() func(key string) (string, bool) {
	others := slices.DeleteFunc(d.node.RingMembers(), func(m string) bool { return m == d.self })
	cfg := d.ringCfg
	cfg.Logger = nil
	r, err := ring.New(cfg)
	if err != nil || len(others) == 0 {
		return func(string) (string, bool) { return "", false }
	}
	r.Set(others)
	return r.Owner
}
