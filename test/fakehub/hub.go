// Package fakehub is a faithful fake of huggingface.co for tests: the Hub's
// file (resolve, raw, resolve-cache), metadata (info, tree, paths-info, refs,
// commits) and auth contract as the project's HF-PROTOCOL.md describes it, plus
// a separate "CDN" listener that serves LFS bytes behind signed URLs and is
// also the Xet CAS: reconstructions (v1, v2) behind Xet tokens and xorb byte
// ranges behind signed URLs, for Xet files chunked into real xorbs.
//
// It is strict on purpose: ETags are real hashes, errors carry the Hub's
// X-Error-Code headers, regular files by branch go through the
// /api/resolve-cache 307, LFS files answer 302 to a CDN host that refuses the
// Hub token, and gated/private repositories answer exactly as the Hub does. A
// cache that passes its tests against this fake should pass against the Hub.
//
// Tests build repositories with AddRepo/Commit/SetRef, run the fake with Start
// (or mount Handler in httptest), observe traffic with Stats and inject
// trouble with Close/Restart, SetThrottle, SetFault and SetXorbCorruption.
package fakehub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hfcache/hfcache/hubclient/xet"
)

// Hub is the fake huggingface.co plus its CDN. All methods are safe for
// concurrent use.
type Hub struct {
	mu        sync.RWMutex
	repos     map[string]*repo  // "type/id" -> repo
	redirects map[string]string // "type/oldid" -> new id (renames and aliases)
	tokens    map[string]string // token -> user
	grants    map[string]map[string]bool
	blobs     map[string]*blob // sha256 -> content
	genBlobs  map[genKey]*blob
	seq       int64

	// The Xet CAS (xet.go, cas.go), under mu: every xorb by name, the xorb
	// and index holding each chunk hash, and every Xet file by file id.
	xorbs      map[string]*xorb
	chunkIndex map[xet.Hash]chunkLoc
	xetFiles   map[string]*xetFile

	cfgMu        sync.RWMutex
	pageSize     int
	rate         int64
	latency      time.Duration
	fault        func(http.ResponseWriter, *http.Request) bool
	resolveCache bool
	urlTTL       time.Duration
	now          func() time.Time
	xet          xetConfig

	signKey []byte
	reqSeq  atomic.Uint64
	stats   recorder

	hubHandler http.Handler
	cdnHandler http.Handler

	lmu      sync.Mutex
	hubURL   string // advertised URLs
	cdnURL   string
	casURL   string   // "" = cdnURL
	hubAddrs []string // listen addresses, kept for Restart
	cdnAddrs []string
	servers  []*http.Server
	serving  sync.WaitGroup
	running  bool
}

// Default tree page sizes of the Hub.
const (
	DefaultPageSize       = 1000
	DefaultExpandPageSize = 50
)

// New returns an empty Hub. It does no I/O.
func New() *Hub {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h := &Hub{
		repos:        map[string]*repo{},
		redirects:    map[string]string{},
		tokens:       map[string]string{},
		grants:       map[string]map[string]bool{},
		blobs:        map[string]*blob{},
		genBlobs:     map[genKey]*blob{},
		xorbs:        map[string]*xorb{},
		chunkIndex:   map[xet.Hash]chunkLoc{},
		xetFiles:     map[string]*xetFile{},
		xet:          defaultXetConfig(),
		pageSize:     DefaultPageSize,
		resolveCache: true,
		urlTTL:       time.Hour,
		now:          time.Now,
		signKey:      key,
	}
	h.stats.reset()
	h.hubHandler = h.middleware(false, http.HandlerFunc(h.serveHub))
	h.cdnHandler = h.middleware(true, http.HandlerFunc(h.serveCDN))
	return h
}

// Handler is the Hub's handler (without the CDN), e.g. for httptest. LFS
// redirects point at CDNURL, which is empty unless Start or SetURLs set it.
func (h *Hub) Handler() http.Handler { return h.hubHandler }

// CDNHandler is the CDN's handler; it is also the Xet CAS's (paths
// /v1/reconstructions/, /v2/reconstructions/, /reconstruction/, /xorbs/).
func (h *Hub) CDNHandler() http.Handler { return h.cdnHandler }

// Start listens on 127.0.0.1:0 for the Hub and on a separate 127.0.0.1:0
// for the CDN, whose URLs use the host name "localhost" so that clients see
// a different host and must not send the Hub token there.
func (h *Hub) Start() error { return h.StartOn("127.0.0.1:0", "127.0.0.1:0") }

// StartOn is Start on given addresses. The CDN URL's host is "localhost" with
// the CDN port (see SetURLs to advertise other URLs).
func (h *Hub) StartOn(hubAddr, cdnAddr string) error {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	if h.running || h.hubAddrs != nil {
		return errors.New("fakehub: already started")
	}
	hl, err := net.Listen("tcp", hubAddr)
	if err != nil {
		return err
	}
	cls, err := listenCDN(cdnAddr)
	if err != nil {
		hl.Close()
		return err
	}
	h.hubAddrs = []string{hl.Addr().String()}
	for _, l := range cls {
		h.cdnAddrs = append(h.cdnAddrs, l.Addr().String())
	}
	if h.hubURL == "" {
		h.hubURL = "http://" + hl.Addr().String()
	}
	if h.cdnURL == "" {
		h.cdnURL = "http://localhost:" + strconv.Itoa(cls[0].Addr().(*net.TCPAddr).Port)
	}
	h.serve([]net.Listener{hl}, cls)
	return nil
}

// listenCDN listens on addr and, when addr is 127.0.0.1, best-effort on [::1]
// with the same port, so that "localhost" reaches it whichever way it resolves.
func listenCDN(addr string) ([]net.Listener, error) {
	host, _, _ := net.SplitHostPort(addr)
	if host != "127.0.0.1" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		return []net.Listener{l}, nil
	}
	var last error
	for range 20 {
		l4, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		port := strconv.Itoa(l4.Addr().(*net.TCPAddr).Port)
		l6, err := net.Listen("tcp", "[::1]:"+port)
		if err == nil {
			return []net.Listener{l4, l6}, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return []net.Listener{l4}, nil // no IPv6 loopback
		}
		l4.Close()
		last = err
		if _, p, _ := net.SplitHostPort(addr); p != "0" {
			break
		}
	}
	return nil, last
}

// serve runs one http.Server per listener; h.lmu is held.
func (h *Hub) serve(hubLs, cdnLs []net.Listener) {
	run := func(l net.Listener, handler http.Handler) {
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
		h.servers = append(h.servers, srv)
		h.serving.Add(1)
		go func() {
			defer h.serving.Done()
			_ = srv.Serve(l)
		}()
	}
	for _, l := range hubLs {
		run(l, h.hubHandler)
	}
	for _, l := range cdnLs {
		run(l, h.cdnHandler)
	}
	h.running = true
}

// URL is the Hub's base URL, "http://127.0.0.1:port" ("" before Start).
func (h *Hub) URL() string {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	return h.hubURL
}

// CDNURL is the CDN's base URL, "http://localhost:port" ("" before Start).
func (h *Hub) CDNURL() string {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	return h.cdnURL
}

// SetURLs overrides the advertised base URLs (pagination Links, Xet Links,
// CDN redirects), e.g. when serving Handler and CDNHandler from httptest.
// An empty string leaves that URL unchanged. The CAS URL follows the CDN
// URL unless SetCASURL set it.
func (h *Hub) SetURLs(hubURL, cdnURL string) {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	if hubURL != "" {
		h.hubURL = hubURL
	}
	if cdnURL != "" {
		h.cdnURL = cdnURL
	}
}

// Close stops both listeners and closes every active connection, like an
// outage. It is idempotent; Restart brings the Hub back on the same ports.
func (h *Hub) Close() {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	for _, s := range h.servers {
		_ = s.Close()
	}
	h.servers = nil
	h.serving.Wait()
	h.running = false
}

// Restart listens again on the same ports after Close.
func (h *Hub) Restart() error {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	if h.running {
		return errors.New("fakehub: still running")
	}
	if h.hubAddrs == nil {
		return errors.New("fakehub: never started")
	}
	// The first address of each server is required; the CDN's [::1] twin is best-effort.
	listen := func(addrs []string) ([]net.Listener, error) {
		var ls []net.Listener
		for i, a := range addrs {
			var l net.Listener
			var err error
			// The port may linger briefly after Close.
			for i := 0; i < 50; i++ {
				if l, err = net.Listen("tcp", a); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && i > 0 {
				continue
			}
			if err != nil {
				for _, l := range ls {
					l.Close()
				}
				return nil, err
			}
			ls = append(ls, l)
		}
		return ls, nil
	}
	hls, err := listen(h.hubAddrs)
	if err != nil {
		return err
	}
	cls, err := listen(h.cdnAddrs)
	if err != nil {
		for _, l := range hls {
			l.Close()
		}
		return err
	}
	h.serve(hls, cls)
	return nil
}

// SetThrottle caps every response body at bytesPerSec and delays every
// response's headers by latency; zero disables either.
func (h *Hub) SetThrottle(bytesPerSec int64, latency time.Duration) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.rate, h.latency = bytesPerSec, latency
}

// SetPageSize sets the tree (and commits) page size; listings with
// expand=true use min(n, 50). n <= 0 restores the Hub's 1000/50.
func (h *Hub) SetPageSize(n int) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	if n <= 0 {
		n = DefaultPageSize
	}
	h.pageSize = n
}

// SetFault installs a hook run before every Hub and CDN request (CDN paths
// start with "/repos/"; the CAS's, on the CDN listener, with "/v1/",
// "/v2/", "/reconstruction/" and "/xorbs/"); when it returns true it has answered the request and
// the fake does nothing more. nil removes it.
func (h *Hub) SetFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.fault = f
}

// SetResolveCacheRedirect turns on (default) or off the 307 to
// /api/resolve-cache/... for regular files resolved by a non-commit revision.
func (h *Hub) SetResolveCacheRedirect(on bool) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.resolveCache = on
}

// SetSignedURLTTL sets how long CDN URLs stay valid (default one hour).
func (h *Hub) SetSignedURLTTL(d time.Duration) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.urlTTL = d
}

// SetClock replaces time.Now (commit dates, signed URL expiry, token expiry).
func (h *Hub) SetClock(now func() time.Time) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.now = now
}

type config struct {
	pageSize     int
	rate         int64
	latency      time.Duration
	fault        func(http.ResponseWriter, *http.Request) bool
	resolveCache bool
	urlTTL       time.Duration
	now          func() time.Time
}

func (h *Hub) config() config {
	h.cfgMu.RLock()
	defer h.cfgMu.RUnlock()
	return config{h.pageSize, h.rate, h.latency, h.fault, h.resolveCache, h.urlTTL, h.now}
}

// clock reads the (replaceable) clock.
func (h *Hub) clock() time.Time { return h.config().now() }

// middleware wraps both servers: request id, stats, CORS, latency, fault
// hook, throttle.
func (h *Hub) middleware(cdn bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := h.config()
		rec := h.stats.begin(r, w, cdn)
		defer rec.end()
		var rw http.ResponseWriter = rec
		if !cdn {
			rw.Header().Set("X-Request-Id", fmt.Sprintf("Root=1-%08x-%024x", cfg.now().Unix(), h.reqSeq.Add(1)))
			if cors(rw, r) {
				return
			}
		}
		if cfg.latency > 0 {
			t := time.NewTimer(cfg.latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if cfg.fault != nil && cfg.fault(rw, r) {
			return
		}
		if cfg.rate > 0 {
			rw = &throttledWriter{ResponseWriter: rw, rate: cfg.rate, ctx: r.Context(), start: time.Now()}
		}
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), recKey{}, rec)))
	})
}

type recKey struct{}

// exposed is the Hub's Access-Control-Expose-Headers list.
const exposed = "X-Repo-Commit, X-Request-Id, X-Error-Code, X-Error-Message, X-Total-Count, ETag, Link, Accept-Ranges, Content-Range, X-Linked-Size, X-Linked-ETag, X-Xet-Hash"

// cors adds the Hub's CORS headers and answers preflights (returns true then).
func cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Vary", "Origin")
	w.Header().Set("Access-Control-Expose-Headers", exposed)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Range, Accept, Content-Type, User-Agent")
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// baseURL is the absolute URL the Hub advertises for itself.
func (h *Hub) baseURL(r *http.Request) string {
	h.lmu.Lock()
	u := h.hubURL
	h.lmu.Unlock()
	if u == "" {
		return "http://" + r.Host
	}
	return u
}
