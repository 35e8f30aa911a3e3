package hubclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the upstream traffic of every remote's client: requests
// by remote, method and status, transport errors, 429s, body bytes and the
// time to response headers. Build one per node (per Prometheus registry,
// never a global), register it, and give each client Remote(name) as its
// Config.Metrics. Labels are the remote's configured name, the method and
// the status code: nothing unbounded (no URL, repository or token).
type Metrics struct {
	requests *prometheus.CounterVec   // remote, method, status
	errors   *prometheus.CounterVec   // remote, kind
	limited  *prometheus.CounterVec   // remote
	bytes    *prometheus.CounterVec   // remote
	latency  *prometheus.HistogramVec // remote
}

// NewMetrics builds the upstream metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_upstream_requests_total",
			Help: "HTTP requests sent to an upstream Hub (each redirect hop and retry counts), by remote, method and status code.",
		}, []string{"remote", "method", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_upstream_errors_total",
			Help: "Upstream transfers that failed without an HTTP status: kind=request (connect, TLS, no response headers), stall (a body sent nothing for the stall timeout), body (a body broke off).",
		}, []string{"remote", "kind"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_upstream_rate_limited_total",
			Help: "Upstream responses with status 429 (Too Many Requests).",
		}, []string{"remote"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hfcache_upstream_received_bytes_total",
			Help: "Response body bytes read from an upstream Hub and its CDN.",
		}, []string{"remote"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hfcache_upstream_response_seconds",
			Help:    "Time from sending an upstream request to its response headers.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"remote"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.errors.Describe(ch)
	m.limited.Describe(ch)
	m.bytes.Describe(ch)
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.errors.Collect(ch)
	m.limited.Collect(ch)
	m.bytes.Collect(ch)
	m.latency.Collect(ch)
}

var _ prometheus.Collector = (*Metrics)(nil)

// Remote is what the client of the remote called name counts into; nil
// on a nil Metrics (the client then counts nothing).
func (m *Metrics) Remote(name string) *RemoteMetrics {
	if m == nil {
		return nil
	}
	return &RemoteMetrics{
		m: m, name: name,
		reqErrors:  m.errors.WithLabelValues(name, "request"),
		stalls:     m.errors.WithLabelValues(name, "stall"),
		bodyErrors: m.errors.WithLabelValues(name, "body"),
		limited:    m.limited.WithLabelValues(name),
		bytes:      m.bytes.WithLabelValues(name),
		latency:    m.latency.WithLabelValues(name),
	}
}

// Forget drops the series of a remote that no longer exists.
func (m *Metrics) Forget(name string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"remote": name}
	m.requests.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.limited.DeletePartialMatch(l)
	m.bytes.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
}

// RemoteMetrics are one remote's series, resolved once.
type RemoteMetrics struct {
	m    *Metrics
	name string

	reqErrors, stalls, bodyErrors prometheus.Counter
	limited, bytes                prometheus.Counter
	latency                       prometheus.Observer
}

// wrap meters a transport; a nil RemoteMetrics leaves it as it is.
func (r *RemoteMetrics) wrap(next http.RoundTripper) http.RoundTripper {
	if r == nil {
		return next
	}
	return &meteredTransport{next: next, m: r}
}

// meteredTransport counts every request the client sends, under its
// redirect and retry loops, and the bytes of every body it reads.
type meteredTransport struct {
	next http.RoundTripper
	m    *RemoteMetrics
}

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		if req.Context().Err() == nil {
			t.m.reqErrors.Inc()
		}
		return nil, err
	}
	t.m.latency.Observe(time.Since(start).Seconds())
	t.m.m.requests.WithLabelValues(t.m.name, methodLabel(req.Method), strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode == http.StatusTooManyRequests {
		t.m.limited.Inc()
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &meteredBody{rc: resp.Body, ctx: req.Context(), m: t.m}
	}
	return resp, nil
}

// methodLabel bounds the method label to the methods the client sends.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		return m
	}
	return "other"
}

// meteredBody counts a response body's bytes and how it failed.
type meteredBody struct {
	rc     io.ReadCloser
	ctx    context.Context // the request's: canceled with errStalled by stallBody
	m      *RemoteMetrics
	failed bool
}

func (b *meteredBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.m.bytes.Add(float64(n))
	}
	if err != nil && err != io.EOF && !b.failed {
		b.failed = true
		switch {
		case errors.Is(context.Cause(b.ctx), errStalled):
			b.m.stalls.Inc()
		case b.ctx.Err() != nil:
			// The caller gave up (or closed the body): not the upstream's fault.
		default:
			b.m.bodyErrors.Inc()
		}
	}
	return n, err
}

func (b *meteredBody) Close() error { return b.rc.Close() }
