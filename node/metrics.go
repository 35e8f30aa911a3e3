package node

import (
	"errors"
	"sync/atomic"

	"github.com/hfcache/hfcache/node/membership"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what a node does that its state does not show: fills
// started, joined by more readers and refused, their outcomes, and blob
// bytes exchanged with other nodes. As a prometheus.Collector it also
// reports, at each scrape, the state it reads from the node: fills in
// flight, ring members and the share of the ring this node owns, gossip
// members by state.
//
// Build one per node (Config.Metrics) and register it in that node's own
// registry; a nil *Metrics counts nothing. No label carries a repository,
// path or token.
type Metrics struct {
	node atomic.Pointer[Node] // bound by New

	fillsStarted, fillWaiters, fillsBusy prometheus.Counter
	fillResults                          *prometheus.CounterVec // result
	verified, failed, refused, postponed prometheus.Counter
	peerBytes                            *prometheus.CounterVec // direction
	peerIn, peerOut                      prometheus.Counter

	xetFiles                 *prometheus.CounterVec // result
	xetVerified, xetFailed   prometheus.Counter
	xetChunkBytes, xetRecons prometheus.Counter

	inFlight, ringMembers, ringShare, gossipMembers *prometheus.Desc
}

// NewMetrics builds a node's metrics, unregistered.
func NewMetrics() *Metrics {
	m := &Metrics{
		fillsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hfcache_fills_started_total",
			Help: "Blob fills started on this node (from a peer that holds the blob, else from upstream).",
		}),
		fillWaiters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hfcache_fill_waiters_total",
			Help: "Requests that joined a fill already in progress instead of starting one (coalesced).",
		}),
		fillsBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hfcache_fills_refused_total",
			Help: "Fills refused because the node ran its maximum of concurrent fills (answered 429).",
		}),
		fillResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_fills_completed_total",
			Help: "Fills ended, by result: verified (stored), failed, store_refused (passed through: the disk refused it), postponed (a hot copy no peer could supply yet).",
		}, []string{"result"}),
		peerBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_peer_bytes_total",
			Help: "Blob bytes exchanged with other nodes: direction=in (relayed from an owner, or copied into a fill), out (served on peer routes).",
		}, []string{"direction"}),
		xetFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_xet_files_checked_total",
			Help: "Xet file fills this node coordinated (as the file's owner), by result: verified (the chunks hash to the file's Xet hash), failed (not, or a fill error).",
		}, []string{"result"}),
		xetChunkBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hfcache_xet_chunk_bytes_filled_total",
			Help: "Bytes of Xet chunks this node stored from upstream (as the xorbs' owner), headers included.",
		}),
		xetRecons: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hfcache_xet_upstream_reconstructions_total",
			Help: "Reconstructions this node fetched from the upstream CAS (a new file, a new repository for it, or fresh signed URLs).",
		}),
		inFlight:      prometheus.NewDesc("hfcache_fills_in_flight", "Blob fills running on this node.", nil, nil),
		ringMembers:   prometheus.NewDesc("hfcache_ring_members", "Members on the consistent-hash ring, as this node sees it.", nil, nil),
		ringShare:     prometheus.NewDesc("hfcache_ring_owned_share", "Fraction of the ring's partitions this node owns.", nil, nil),
		gossipMembers: prometheus.NewDesc("hfcache_gossip_members", "Gossip members this node knows, by state.", []string{"state"}, nil),
	}
	m.verified = m.fillResults.WithLabelValues("verified")
	m.failed = m.fillResults.WithLabelValues("failed")
	m.refused = m.fillResults.WithLabelValues("store_refused")
	m.postponed = m.fillResults.WithLabelValues("postponed")
	m.peerIn = m.peerBytes.WithLabelValues("in")
	m.peerOut = m.peerBytes.WithLabelValues("out")
	m.xetVerified = m.xetFiles.WithLabelValues("verified")
	m.xetFailed = m.xetFiles.WithLabelValues("failed")
	return m
}

var _ prometheus.Collector = (*Metrics)(nil)

// bind makes m report n's state; a Metrics serves one node.
func (m *Metrics) bind(n *Node) error {
	if m == nil {
		return nil
	}
	if !m.node.CompareAndSwap(nil, n) {
		return errors.New("node: Metrics already serve another node")
	}
	return nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.fillsStarted.Desc()
	ch <- m.fillWaiters.Desc()
	ch <- m.fillsBusy.Desc()
	m.fillResults.Describe(ch)
	m.peerBytes.Describe(ch)
	m.xetFiles.Describe(ch)
	ch <- m.xetChunkBytes.Desc()
	ch <- m.xetRecons.Desc()
	ch <- m.inFlight
	ch <- m.ringMembers
	ch <- m.ringShare
	ch <- m.gossipMembers
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- m.fillsStarted
	ch <- m.fillWaiters
	ch <- m.fillsBusy
	m.fillResults.Collect(ch)
	m.peerBytes.Collect(ch)
	m.xetFiles.Collect(ch)
	ch <- m.xetChunkBytes
	ch <- m.xetRecons
	n := m.node.Load()
	if n == nil {
		return
	}
	n.mu.Lock()
	fills := len(n.fills)
	n.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.inFlight, float64(fills))
	if n.cluster == nil {
		gauge(m.ringMembers, 1)
		gauge(m.ringShare, 1)
		return
	}
	gauge(m.ringMembers, float64(len(n.cluster.RingMembers())))
	if r, ok := n.cluster.ring.(interface{ Share(member string) float64 }); ok {
		gauge(m.ringShare, r.Share(n.cluster.Self()))
	}
	counts := map[membership.State]int{}
	for _, mem := range n.cluster.members.Members() {
		counts[mem.State]++
	}
	for _, s := range []membership.State{membership.StateAlive, membership.StateSuspect, membership.StateDead, membership.StateLeft} {
		gauge(m.gossipMembers, float64(counts[s]), string(s))
	}
}

// The node's hooks; each is a no-op on a nil Metrics.

func (m *Metrics) fillStarted() {
	if m != nil {
		m.fillsStarted.Inc()
	}
}

func (m *Metrics) fillJoined() {
	if m != nil {
		m.fillWaiters.Inc()
	}
}

func (m *Metrics) fillRefused() {
	if m != nil {
		m.fillsBusy.Inc()
	}
}

// fillDone counts a fill's outcome, from the error runFill ends with.
func (m *Metrics) fillDone(err error) {
	if m == nil {
		return
	}
	var diskErr *diskError
	switch {
	case err == nil:
		m.verified.Inc()
	case errors.As(err, &diskErr):
		m.refused.Inc()
	case errors.Is(err, errNotHeld):
		m.postponed.Inc()
	default:
		m.failed.Inc()
	}
}

// PeerBytesIn counts blob bytes received from another node.
func (m *Metrics) PeerBytesIn(n int64) {
	if m != nil && n > 0 {
		m.peerIn.Add(float64(n))
	}
}

// PeerBytesOut counts blob bytes sent to another node.
func (m *Metrics) PeerBytesOut(n int64) {
	if m != nil && n > 0 {
		m.peerOut.Add(float64(n))
	}
}

func (m *Metrics) xetFileChecked(err error) {
	switch {
	case m == nil:
	case err == nil:
		m.xetVerified.Inc()
	default:
		m.xetFailed.Inc()
	}
}

func (m *Metrics) xetChunksFilled(n int) {
	if m != nil {
		m.xetChunkBytes.Add(float64(n))
	}
}

func (m *Metrics) xetReconFetched() {
	if m != nil {
		m.xetRecons.Inc()
	}
}
