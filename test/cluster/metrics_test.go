package cluster

import (
	"bytes"
	"math"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/prometheus/client_golang/prometheus"
)

// gather reads one node's registry: name → the sum over its series
// matching labels (nil: all).
func gather(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// TestPerNodeMetrics: three nodes in one process, each with its own
// registry. A large blob fetched through every node is filled once, by its
// owner, from upstream; the others relay it (peer bytes in) from the owner
// (peer bytes out); every node sees three ring members whose shares add
// up to the whole ring.
func TestPerNodeMetrics(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	want := hub.Bytes(hf.Model, modelID, "main", "big.bin")
	var owner *Node
	for _, n := range c.Nodes {
		resp, body := Get(t, fileURL(n, "big.bin"), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("via %s: %d", n.Name, resp.StatusCode)
		}
		for _, o := range c.Nodes {
			if o.Name == resp.Header.Get("X-Hfcache-Node") {
				owner = o
			}
		}
	}
	if owner == nil {
		t.Fatal("no owner named")
	}
	var fills, in, share float64
	for _, n := range c.Nodes {
		fills += gather(t, n.Metrics, "hfcache_fills_started_total", nil)
		in += gather(t, n.Metrics, "hfcache_peer_bytes_total", map[string]string{"direction": "in"})
		share += gather(t, n.Metrics, "hfcache_ring_owned_share", nil)
		if got := gather(t, n.Metrics, "hfcache_ring_members", nil); got != 3 {
			t.Errorf("%s: %v ring members", n.Name, got)
		}
		if got := gather(t, n.Metrics, "hfcache_gossip_members", map[string]string{"state": "alive"}); got != 3 {
			t.Errorf("%s: %v alive members", n.Name, got)
		}
		if got := gather(t, n.Metrics, "hfcache_http_requests_total", map[string]string{"route": "resolve", "status": "200"}); got != 1 {
			t.Errorf("%s: %v resolve requests", n.Name, got)
		}
		if got := gather(t, n.Metrics, "go_goroutines", nil); got == 0 {
			t.Errorf("%s: no Go runtime metrics", n.Name)
		}
	}
	if fills != 1 {
		t.Errorf("%v fills in the cluster, want 1", fills)
	}
	if in != 2*bigSize {
		t.Errorf("%v bytes in from peers, want %d (two relays)", in, 2*bigSize)
	}
	if out := gather(t, owner.Metrics, "hfcache_peer_bytes_total", map[string]string{"direction": "out"}); out != 2*bigSize {
		t.Errorf("owner sent %v bytes to peers, want %d", out, 2*bigSize)
	}
	if got := gather(t, owner.Metrics, "hfcache_upstream_received_bytes_total", nil); got < bigSize {
		t.Errorf("owner read %v bytes upstream", got)
	}
	// The owner filled the blob for a peer (peer_blob); its own client was
	// served from its disk.
	if got := gather(t, owner.Metrics, "hfcache_file_responses_total", map[string]string{"source": "disk"}); got != 1 {
		t.Errorf("owner: %v file responses from disk", got)
	}
	if got := gather(t, owner.Metrics, "hfcache_http_requests_total", map[string]string{"route": "peer_blob", "status": "200"}); got != 2 {
		t.Errorf("owner: %v peer blob requests", got)
	}
	for _, n := range c.Nodes {
		if n != owner {
			if got := gather(t, n.Metrics, "hfcache_file_responses_total", map[string]string{"source": "peer"}); got != 1 {
				t.Errorf("%s: %v relayed file responses", n.Name, got)
			}
		}
	}
	if math.Abs(share-1) > 1e-9 {
		t.Errorf("owned shares add up to %v", share)
	}
}
