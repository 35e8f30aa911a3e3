package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
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
	b.next++
	b.hits[be]++
	return be
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
