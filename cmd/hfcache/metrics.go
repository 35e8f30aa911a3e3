package main

import (
	"log/slog"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// nodeMetrics is one node's Prometheus registry (never the global one)
// and the metrics its components count into. The store's and Raft's
// collectors read their stats at scrape time and are registered once
// those are open.
type nodeMetrics struct {
	reg  *prometheus.Registry
	node *node.Metrics
	hub  *hubclient.Metrics
	http *httpapi.Metrics
}

func newNodeMetrics() *nodeMetrics {
	m := &nodeMetrics{reg: prometheus.NewRegistry(), node: node.NewMetrics(), hub: hubclient.NewMetrics()}
	m.http = httpapi.NewMetrics(m.node)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.node, m.hub, m.http,
	)
	return m
}

// register adds a collector; a failure is logged, never fatal to serving.
func (m *nodeMetrics) register(log *slog.Logger, c prometheus.Collector) {
	if err := m.reg.Register(c); err != nil {
		log.Error("metrics: registering a collector", "err", err)
	}
}
