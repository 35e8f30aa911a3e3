package store

import "github.com/prometheus/client_golang/prometheus"

// collector reports Stats at every scrape: the store keeps its own
// accounting, so nothing is counted twice.
type collector struct {
	s *Store

	used, budget, reserved, pinned, blobs, fills *prometheus.Desc
	xorbs, xorbBytes                             *prometheus.Desc
	evictions, evictedBytes                      *prometheus.Desc
}

// NewCollector is a Prometheus collector of s's Stats, for the node's own
// registry.
func NewCollector(s *Store) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{
		s:            s,
		used:         d("hfcache_store_used_bytes", "Bytes of complete blobs and xorb chunks in the store."),
		budget:       d("hfcache_store_budget_bytes", "The store's byte budget (--cache-size)."),
		reserved:     d("hfcache_store_reserved_bytes", "Bytes reserved by blobs being filled."),
		pinned:       d("hfcache_store_pinned_bytes", "Bytes of complete blobs open for reading (not evictable)."),
		blobs:        d("hfcache_store_blobs", "Complete blobs in the store."),
		fills:        d("hfcache_store_open_fills", "Blobs being written into the store."),
		evictions:    d("hfcache_store_evictions_total", "Blobs evicted since the store opened."),
		evictedBytes: d("hfcache_store_evicted_bytes_total", "Bytes evicted since the store opened."),
		xorbs:        d("hfcache_store_xorbs", "Xet xorbs of which the store holds chunks."),
		xorbBytes:    d("hfcache_store_xorb_bytes", "Bytes of xorb chunks in the store (part of used)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.used, c.budget, c.reserved, c.pinned, c.blobs, c.fills, c.evictions, c.evictedBytes, c.xorbs, c.xorbBytes} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.used, float64(st.Used))
	g(c.budget, float64(st.Budget))
	g(c.reserved, float64(st.Reserved))
	g(c.pinned, float64(st.Pinned))
	g(c.blobs, float64(st.Blobs))
	g(c.fills, float64(st.Fills))
	g(c.xorbs, float64(st.Xorbs))
	g(c.xorbBytes, float64(st.XorbBytes))
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.evictedBytes, prometheus.CounterValue, float64(st.EvictedBytes))
}
