// Package httpapi is hfcache's HTTP surface: the Hugging Face Hub API that
// clients point HF_ENDPOINT / hubUrl at, served under a distribution's base
// path, and the admin API.
//
// The client routes answer exactly as huggingface.co does — the same status
// codes, the same X-Repo-Commit / ETag / X-Linked-* headers, the same
// X-Error-Code errors — except that files always come from the cache with a
// 200 or 206 (never a redirect to a CDN the client would then fetch from
// directly), and Xet-backed files name this cache as their Xet CAS (xet.go:
// the token route, reconstructions, xorb ranges), or hide Xet altogether
// for a remote configured so.
//
// Untrusted input (repo ids, revisions, paths) is parsed here, once, into
// the typed values of package hf; the node never sees raw strings.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// Node is what the HTTP layer needs from a node.
type Node interface {
	Name() string
	Resolve(ctx context.Context, req node.FileRequest) (*node.File, error)
	Open(ctx context.Context, f *node.File) (*node.Content, error)
	API(ctx context.Context, req node.APIRequest) (*node.APIResponse, error)
	Passthrough(ctx context.Context, remote, access, method, escapedPath, rawQuery, callerToken string, header http.Header) (*http.Response, error)

	// The same, as the owner, for requests forwarded by peers.
	VerifyPeer(r *http.Request) error
	OpenPeerToken(sealed string) (string, error)
	ResolveLocal(ctx context.Context, req node.FileRequest) (*node.File, error)
	APILocal(ctx context.Context, req node.APIRequest) (*node.APIResponse, error)
	OpenLocal(ctx context.Context, f *node.File, onlyDisk bool) (*node.Content, error)
	FileFromPeer(remote, repository string, repo hf.Repo, p hf.Path, pf node.PeerFile, token string) (*node.File, error)
	ToPeer(f *node.File) node.PeerFile
	PeerWarmer

	// Xet (xet.go), and the same as a file's or a xorb's owner.
	XetToken(ctx context.Context, req node.XetTokenRequest) (*node.XetToken, error)
	XetReconstruction(ctx context.Context, req node.XetReconRequest) ([]byte, error)
	OpenXorb(ctx context.Context, xorb string, q url.Values) (*node.XorbContent, error)
	XetRecordPeer(ctx context.Context, req node.PeerXetRequest) (any, error)
	XetEnsurePeer(ctx context.Context, req node.PeerXetRequest) (any, error)
	XorbOpLocal(ctx context.Context, req node.PeerXorbOp) (*node.PeerXorbChunks, error)
}

var _ Node = (*node.Node)(nil)

// Config configures the client handler.
type Config struct {
	Logger *slog.Logger
	// NoRequestLog turns off the line per client request (the other log
	// lines stay).
	NoRequestLog bool
	// MaxPerClient caps concurrent requests per client address (0: no cap);
	// past it clients get 429 with Retry-After.
	MaxPerClient int
	// RequirePeerCert makes peer routes demand a client certificate the
	// listener verified (mutual TLS between nodes), on top of the signature.
	RequirePeerCert bool
	// Metrics counts requests (NewMetrics; one per node); nil counts nothing.
	Metrics *Metrics
	// Ready reports whether the node is ready to serve, for /-/ready (nil:
	// always).
	Ready func() error
	// Activity is told the repositories served and the failed requests,
	// for the status page (the node satisfies it); nil tells nothing.
	Activity Activity
}

// Distribution is a base path clients point at, served from a remote.
type Distribution struct {
	Name string
	// BasePath is the path prefix ("" serves at the root, "/hf" serves
	// HF_ENDPOINT=http://host:8080/hf).
	BasePath   string
	Repository string // the configured repository it serves
	Remote     string // the repository's remote
	Access     string // node.AccessCaller or node.AccessRemote
}

// Client serves the Hub API to HF clients.
type Client struct {
	cfg   Config
	node  Node
	log   *slog.Logger
	dists atomic.Pointer[[]Distribution]
	limit *clientLimiter
	// nodeName is X-Hfcache-Node's value, shared by every response.
	nodeName []string

	draining atomic.Bool  // Drain: refuse new client requests
	inflight atomic.Int64 // client requests and peer blob streams being served
}

// NewClient builds the client-facing handler serving dists.
func NewClient(cfg Config, n Node, dists ...Distribution) *Client {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Client{cfg: cfg, node: n, log: cfg.Logger, limit: newClientLimiter(cfg.MaxPerClient)}
	if n != nil {
		c.nodeName = []string{n.Name()} // shared by every response, never modified
	}
	c.SetDistributions(dists)
	return c
}

// SetDistributions replaces the served distributions (configuration
// changes apply to the next request).
func (c *Client) SetDistributions(dists []Distribution) {
	out := make([]Distribution, len(dists))
	for i, d := range dists {
		d.BasePath = "/" + strings.Trim(d.BasePath, "/")
		if d.BasePath == "/" {
			d.BasePath = ""
		}
		out[i] = d
	}
	// Longest base path first: the most specific distribution wins.
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].BasePath) > len(out[j].BasePath) })
	c.dists.Store(&out)
}

// distribution finds the distribution serving an escaped path and the path
// relative to its base.
func (c *Client) distribution(p string) (Distribution, string, bool) {
	norm := ""
	for _, d := range *c.dists.Load() {
		if d.BasePath == "" {
			return d, p, true
		}
		if norm == "" {
			norm = "/" + strings.Join(splitSegments(p), "/")
		}
		rest, ok := strings.CutPrefix(norm, d.BasePath)
		if ok && (rest == "" || rest[0] == '/') {
			return d, rest, true
		}
	}
	return Distribution{}, "", false
}

// ServeHTTP routes a client request, then logs and counts it.
func (c *Client) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := c.beginRequest(rw)
	completed := false
	defer func() { c.endRequest(w, r, completed) }()
	c.serve(w, r)
	completed = true
}

func (c *Client) serve(w *loggedResponse, r *http.Request) {
	h := w.Header()
	w.idv[0] = w.id
	h[hfRequestID] = w.idv[:]
	h[headerNode] = c.nodeName
	setCORS(h, r)

	p := r.URL.EscapedPath()
	if p == "/-/health" {
		w.route = routeHealth
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": c.node.Name()})
		return
	}
	if p == "/-/ready" {
		w.route = routeHealth
		serveReady(w, c.node.Name(), c.cfg.Ready)
		return
	}
	if strings.HasPrefix(p, "/-/") {
		w.route = peerRouteOf(p)
		if p == node.PeerBlobPath { // a peer relaying a download: a drain waits for it too
			c.inflight.Add(1)
			defer c.inflight.Add(-1)
		}
		c.servePeer(w, r, p)
		return
	}
	if !c.admitClient(w) {
		return
	}
	defer c.admitted()
	if r.Method == http.MethodOptions {
		w.route = routePreflight
		preflight(w)
		return
	}
	release, ok := c.limit.acquire(r)
	if !ok {
		writeError(w, errTooManyRequests)
		return
	}
	defer release()
	d, rel, ok := c.distribution(p)
	if !ok {
		writeError(w, errNotFound)
		return
	}
	w.dist = d.Name
	rt, err := parseRoute(rel)
	if err != nil {
		writeError(w, err)
		return
	}
	w.setRoute(d, rt)
	switch {
	case rt.file != nil:
		c.serveFile(w, r, d, rt.file)
	case rt.api != nil:
		c.serveRepoAPI(w, r, d, rt.api)
	case rt.xet != nil:
		c.serveXet(w, r, d, rt.xet)
	default:
		c.passthrough(w, r, d, rt.other)
	}
}

// externalBase is the distribution's URL as the client reached it, for
// Link headers: scheme, host and base path.
func (c *Client) externalBase(r *http.Request, d Distribution) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" && !strings.ContainsAny(fh, "/<> \t,") {
		host = fh
	}
	return scheme + "://" + host + d.BasePath
}

// first is h.Get(key) for a key already in canonical form, as the
// header maps of both servers keep them: Get would canonicalize it again,
// which showed on the hit path's profile.
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// bearer is the caller's Hub token, if any.
func bearer(r *http.Request) string {
	a := first(r.Header, "Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// Response headers this cache adds.
const (
	hfRequestID   = "X-Request-Id"
	headerNode    = "X-Hfcache-Node"
	headerSource  = node.HeaderSource
	headerStale   = "X-Hfcache-Stale"
	headerVia     = "X-Hfcache-Via"
	exposeHeaders = "X-Repo-Commit, X-Request-Id, X-Error-Code, X-Error-Message, X-Total-Count, ETag, Link, Accept-Ranges, Content-Range, Content-Length, X-Linked-Size, X-Linked-ETag, X-Xet-Hash, X-Hfcache-Node, X-Hfcache-Source, X-Hfcache-Stale"
)

// setCORS adds what a browser needs to read a response across origins:
// Access-Control-Allow-Origin and the list of headers a script may read.
// As from the Hub, only a request that carries Origin gets them. A
// browser sends Origin with every cross-origin request, and no other
// client reads them; they were 290 of the 721 header bytes of a 4 KiB
// hit (docs/PERFORMANCE.md, session 11). Every response says Vary:
// Origin, so that a shared cache in between never hands the answer
// without them to a browser. It runs once, first, on every client-port
// request (serve); the passthrough keeps these over the Hub's.
func setCORS(h http.Header, r *http.Request) {
	h["Vary"] = varyOrigin
	if _, ok := r.Header["Origin"]; !ok {
		return
	}
	h["Access-Control-Allow-Origin"] = corsOrigin
	h["Access-Control-Expose-Headers"] = corsExpose
}

// The CORS values, shared (never modified in place: Header.Set replaces
// the slice, Header.Add appends to a full one).
var (
	corsOrigin = []string{"*"}
	corsExpose = []string{exposeHeaders}
	varyOrigin = []string{"Origin"}
)

func preflight(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Range, Accept, Content-Type, If-None-Match, If-Range, User-Agent")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
