package httpapi

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/hfcache/hfcache/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routeID is the route label of a request: a small fixed set, never the
// path (which names repositories and files).
type routeID uint8

const (
	routeUnknown        routeID = iota // no distribution, unparsable, or refused before routing
	routeHealth                        // GET /-/health
	routePreflight                     // OPTIONS (CORS)
	routeResolve                       // /{repo}/resolve/{rev}/{path}
	routeRaw                           // /{repo}/raw/{rev}/{path}
	routeAPIInfo                       // /api/{type}s/{id}[/revision/{rev}]
	routeTree                          // /api/{type}s/{id}/tree/{rev}[/{dir}]
	routePathsInfo                     // /api/{type}s/{id}/paths-info/{rev}
	routeXet                           // /api/{type}s/{id}/xet-{read,write}-token
	routeAPIPassthrough                // another /api/{type}s/{id}/... passed through
	routePassthrough                   // any other /api/... passed through
	routePeerResolve                   // /-/peer/resolve
	routePeerAPI                       // /-/peer/api
	routePeerBlob                      // /-/peer/blob
	routePeerWarm                      // /-/peer/warm
	routePeerOther                     // another /-/ path
	routeXetRecon                      // {base}/v1|v2/reconstructions/{hash}, {base}/reconstruction/{hash}
	routeXetXorb                       // {base}/xet/xorb/{xorb}
	routePeerXet                       // /-/peer/xet/...
	numRoutes
)

var routeNames = [numRoutes]string{
	"unknown", "health", "preflight", "resolve", "raw", "api_info", "tree", "paths_info", "xet",
	"api_passthrough", "passthrough", "peer_resolve", "peer_api", "peer_blob", "peer_warm", "peer_other",
	"xet_reconstruction", "xet_xorb", "peer_xet",
}

func (r routeID) String() string { return routeNames[r] }

// routeOf is the label of a parsed client route.
func routeOf(rt route) routeID {
	switch {
	case rt.file != nil && rt.file.Kind == "raw":
		return routeRaw
	case rt.file != nil:
		return routeResolve
	case rt.api != nil:
		switch rt.api.Action {
		case "", "revision":
			return routeAPIInfo
		case "tree":
			return routeTree
		case "paths-info":
			return routePathsInfo
		case "xet-read-token", "xet-write-token":
			return routeXet
		}
		return routeAPIPassthrough
	case rt.xet != nil && rt.xet.Kind == "xorb":
		return routeXetXorb
	case rt.xet != nil:
		return routeXetRecon
	}
	return routePassthrough
}

// peerRouteOf is the label of a reserved /-/ path (other than health).
func peerRouteOf(p string) routeID {
	switch p {
	case node.PeerResolvePath:
		return routePeerResolve
	case node.PeerAPIPath:
		return routePeerAPI
	case node.PeerBlobPath:
		return routePeerBlob
	case node.PeerWarmPath:
		return routePeerWarm
	case node.PeerXetReconPath, node.PeerXetEnsurePath, node.PeerXetXorbOpPath, node.PeerXetXorbPath:
		return routePeerXet
	}
	return routePeerOther
}

// sourceID is where a response's bytes came from (X-Hfcache-Source, or
// peer when this node relayed an owner's answer).
type sourceID uint8

const (
	sourceNone sourceID = iota // metadata, errors, health
	sourceDisk
	sourceUpstream
	sourcePeer
	numSources
)

var sourceNames = [numSources]string{"none", "disk", "upstream", "peer"}

func (s sourceID) String() string { return sourceNames[s] }

func sourceOf(header string, relayed bool) sourceID {
	if relayed {
		return sourcePeer
	}
	switch header {
	case "disk":
		return sourceDisk
	case "upstream":
		return sourceUpstream
	case "peer":
		return sourcePeer
	}
	return sourceNone
}

// PeerTraffic counts blob bytes exchanged with other nodes; the node's
// metrics (node.Metrics) satisfy it.
type PeerTraffic interface {
	PeerBytesIn(n int64)
	PeerBytesOut(n int64)
}

// Metrics are the client port's request metrics. Build one per node
// (NewMetrics), register it in that node's registry and pass it in
// Config.Metrics; a nil *Metrics counts nothing. Labels are bounded: the
// route (a fixed set), the status code, the distribution's configured
// name and the bytes' source; never a path, repository or token.
type Metrics struct {
	peer PeerTraffic

	requests *prometheus.CounterVec   // route, status, distribution
	duration *prometheus.HistogramVec // route
	bytes    *prometheus.CounterVec   // route, source
	files    *prometheus.CounterVec   // source
	aborted  *prometheus.CounterVec   // route
	inFlight prometheus.Gauge

	// Series resolved once per combination, so a request costs a map
	// lookup and a few atomic adds, not label hashing.
	mu     sync.RWMutex
	series map[seriesKey]*series
}

type seriesKey struct {
	dist   string
	route  routeID
	source sourceID
	status int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
	bytes    prometheus.Counter
	file     prometheus.Counter // nil unless the response served a file's bytes
}

// NewMetrics builds the client port's metrics, unregistered. peer, if
// not nil, is told the blob bytes this node serves to peers (out) and
// relays from a blob's owner (in).
func NewMetrics(peer PeerTraffic) *Metrics {
	return &Metrics{
		peer: peer,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_http_requests_total",
			Help: "Requests on the client port (peer routes included), by route, status code and distribution.",
		}, []string{"route", "status", "distribution"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hfcache_http_request_duration_seconds",
			Help:    "Time to serve a request on the client port, body included, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60, 300},
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_http_response_bytes_total",
			Help: "Response body bytes sent on the client port, by route and by where they came from (disk, upstream, peer; none for metadata and errors).",
		}, []string{"route", "source"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_file_responses_total",
			Help: "Successful file downloads (resolve GETs answered 2xx) by source: disk is a hit; upstream was filled or passed through here; peer was relayed from the blob's owner. The hit ratio's inputs.",
		}, []string{"source"}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_http_aborted_total",
			Help: "Responses aborted mid-body (the client sees a broken transfer), by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hfcache_http_requests_in_flight",
			Help: "Requests being served on the client port.",
		}),
		series: map[seriesKey]*series{},
	}
}

var _ prometheus.Collector = (*Metrics)(nil)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.duration.Describe(ch)
	m.bytes.Describe(ch)
	m.files.Describe(ch)
	m.aborted.Describe(ch)
	ch <- m.inFlight.Desc()
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.duration.Collect(ch)
	m.bytes.Collect(ch)
	m.files.Collect(ch)
	m.aborted.Collect(ch)
	ch <- m.inFlight
}

func (m *Metrics) begin() {
	if m != nil {
		m.inFlight.Inc()
	}
}

// observe counts one finished request.
func (m *Metrics) observe(rec *loggedResponse, relayed, aborted bool, seconds float64) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	src := sourceOf(first(rec.Header(), headerSource), relayed)
	k := seriesKey{dist: rec.dist, route: rec.route, source: src, status: rec.status}
	s := m.seriesFor(k)
	s.requests.Inc()
	s.duration.Observe(seconds)
	if rec.bytes > 0 {
		s.bytes.Add(float64(rec.bytes))
	}
	if s.file != nil {
		s.file.Inc()
	}
	if aborted {
		m.aborted.WithLabelValues(k.route.String()).Inc()
	}
	if m.peer != nil {
		switch {
		case rec.route == routePeerBlob:
			m.peer.PeerBytesOut(rec.bytes)
		case relayed:
			m.peer.PeerBytesIn(rec.bytes)
		}
	}
}

func (m *Metrics) seriesFor(k seriesKey) *series {
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[k]; ok {
		return s
	}
	route := k.route.String()
	s = &series{
		requests: m.requests.WithLabelValues(route, strconv.Itoa(k.status), k.dist),
		duration: m.duration.WithLabelValues(route),
		bytes:    m.bytes.WithLabelValues(route, k.source.String()),
	}
	if k.route == routeResolve && k.source != sourceNone && k.status >= 200 && k.status < 300 {
		s.file = m.files.WithLabelValues(k.source.String())
	}
	m.series[k] = s
	return s
}

// metricsHandler serves a node's registry in Prometheus' exposition format
// (the admin port's /metrics).
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
