package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// balancer is the round-robin load balancer a lab puts in front of the
// cluster: each request goes to the next backend; a backend that refuses
// the connection is skipped (as a health-checking balancer would).
type balancer struct {
	URL string

	mu       sync.Mutex
	backends []string
	next     int
	hits     map[string]int
	tr       *http.Transport
	// retry503 passes a 503 that closes the connection (a draining node)
	// to the next backend, as nginx's proxy_next_upstream http_503 does.
	retry503 bool
	// notReady are the backends whose /-/ready failed at the last probe
	// (probeReady): skipped while another backend is ready.
	notReady map[string]bool
	retried  int // requests passed on after a draining node's 503
}

func newBalancer(t *testing.T, backends ...string) *balancer {
	b := &balancer{backends: backends, hits: map[string]int{}, tr: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		b.tr.CloseIdleConnections()
	})
	b.URL = srv.URL
	return b
}

func (b *balancer) set(backends ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = backends
}

func (b *balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	be := b.backends[b.next%len(b.backends)]
	for i := 0; i < len(b.backends) && b.notReady[be]; i++ {
		b.next++
		be = b.backends[b.next%len(b.backends)]
	}
	b.next++
	b.hits[be]++
	return be
}

// probeReady polls every backend's /-/ready each interval, as a
// Kubernetes readiness probe or an HAProxy health check does, and takes
// the backends that fail it out of rotation until they pass again.
func (b *balancer) probeReady(t *testing.T, interval time.Duration) {
	hc := &http.Client{Timeout: interval}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			b.mu.Lock()
			backends := append([]string(nil), b.backends...)
			b.mu.Unlock()
			state := map[string]bool{}
			for _, be := range backends {
				resp, err := hc.Get(be + "/-/ready")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				state[be] = err != nil || resp.StatusCode != http.StatusOK
			}
			b.mu.Lock()
			b.notReady = state
			b.mu.Unlock()
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	n := len(b.backends)
	b.mu.Unlock()
	var lastErr error
	for try := 0; try < n; try++ {
		be, _ := url.Parse(b.pick())
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = be.Scheme, be.Host
		out.Host = r.Host // keep the client's Host, as balancers do: Link headers name the balancer
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		resp, err := b.tr.RoundTrip(out)
		if err != nil {
			lastErr = err
			continue
		}
		if b.retry503 && resp.StatusCode == http.StatusServiceUnavailable && resp.Close && try < n-1 {
			resp.Body.Close()
			b.mu.Lock()
			b.retried++
			b.mu.Unlock()
			continue
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		if _, err := io.Copy(w, resp.Body); err != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	http.Error(w, "no backend: "+lastErr.Error(), http.StatusBadGateway)
}

// spread is how many requests each backend got.
func (b *balancer) spread() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.hits {
		out[k] = v
	}
	return out
}
