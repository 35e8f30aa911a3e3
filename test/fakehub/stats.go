package fakehub

import (
	"net/http"
	"strings"
	"sync"
)

// MaxLog bounds Stats.Log so long benchmarks do not grow it without limit.
const MaxLog = 100_000

// Request is a (method, decoded URL path) pair.
type Request struct {
	Method, Path string
}

// Exchange is one request the Hub or the CDN answered.
type Exchange struct {
	CDN    bool // answered by the CDN listener
	Method string
	Path   string // decoded URL path
	Query  string // raw query
	Range  string // Range request header
	Auth   bool   // the request carried an Authorization header
	Status int
	Bytes  int64  // body bytes written
	Addr   string // content address of the file body served, if any
}

// Stats is a snapshot of the traffic counters.
type Stats struct {
	Calls           map[Request]int  // requests per (method, path), Hub and CDN
	PathBytes       map[string]int64 // body bytes written per path
	Fetches         map[string]int   // body fetches per content address (sha256 or git sha1 hex)
	FetchBytes      map[string]int64 // body bytes written per content address
	CDNAuthRejected int              // CDN requests refused because they carried Authorization
	Log             []Exchange       // finished exchanges in completion order (the first MaxLog since ResetStats)
}

// BodyFetches is how many responses (Hub or CDN) started sending the body of
// the file with this content address: GETs answered 200 or 206, not HEADs.
func (s Stats) BodyFetches(sha string) int { return s.Fetches[strings.ToLower(sha)] }

// BodyBytes is how many body bytes of that content were sent.
func (s Stats) BodyBytes(sha string) int64 { return s.FetchBytes[strings.ToLower(sha)] }

// Requests counts requests with this method ("" for any) whose decoded path
// starts with pathPrefix.
func (s Stats) Requests(method, pathPrefix string) int {
	n := 0
	for k, c := range s.Calls {
		if (method == "" || k.Method == method) && strings.HasPrefix(k.Path, pathPrefix) {
			n += c
		}
	}
	return n
}

// Total is the number of requests of both servers.
func (s Stats) Total() int { return s.Requests("", "") }

// Stats snapshots the counters.
func (h *Hub) Stats() Stats { return h.stats.snapshot() }

// ResetStats zeroes the counters.
func (h *Hub) ResetStats() { h.stats.reset() }

// recorder holds the counters.
type recorder struct {
	mu sync.Mutex
	s  Stats
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.s = Stats{
		Calls: map[Request]int{}, PathBytes: map[string]int64{},
		Fetches: map[string]int{}, FetchBytes: map[string]int64{},
	}
}

func (rc *recorder) snapshot() Stats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := Stats{
		Calls: make(map[Request]int, len(rc.s.Calls)), PathBytes: make(map[string]int64, len(rc.s.PathBytes)),
		Fetches: make(map[string]int, len(rc.s.Fetches)), FetchBytes: make(map[string]int64, len(rc.s.FetchBytes)),
		CDNAuthRejected: rc.s.CDNAuthRejected,
		Log:             append([]Exchange(nil), rc.s.Log...),
	}
	for k, v := range rc.s.Calls {
		s.Calls[k] = v
	}
	for k, v := range rc.s.PathBytes {
		s.PathBytes[k] = v
	}
	for k, v := range rc.s.Fetches {
		s.Fetches[k] = v
	}
	for k, v := range rc.s.FetchBytes {
		s.FetchBytes[k] = v
	}
	return s
}

// begin counts a request and wraps its writer.
func (rc *recorder) begin(r *http.Request, w http.ResponseWriter, cdn bool) *exchangeWriter {
	rc.mu.Lock()
	rc.s.Calls[Request{r.Method, r.URL.Path}]++
	rc.mu.Unlock()
	return &exchangeWriter{ResponseWriter: w, rc: rc, r: r, ex: Exchange{
		CDN: cdn, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization") != "",
	}}
}

// exchangeWriter counts what a handler writes.
type exchangeWriter struct {
	http.ResponseWriter
	rc          *recorder
	r           *http.Request
	ex          Exchange
	wroteHeader bool
	fetch       bool // the body is file content
}

// serving tells the recorder which content the body about to be written is.
func (ew *exchangeWriter) serving(addr string) { ew.ex.Addr = addr }

func (ew *exchangeWriter) WriteHeader(code int) {
	if ew.wroteHeader {
		ew.ResponseWriter.WriteHeader(code)
		return
	}
	ew.wroteHeader = true
	ew.ex.Status = code
	ew.fetch = ew.ex.Addr != "" && ew.r.Method == http.MethodGet && (code == http.StatusOK || code == http.StatusPartialContent)
	if ew.fetch {
		ew.rc.mu.Lock()
		ew.rc.s.Fetches[ew.ex.Addr]++
		ew.rc.mu.Unlock()
	}
	ew.ResponseWriter.WriteHeader(code)
}

func (ew *exchangeWriter) Write(p []byte) (int, error) {
	if !ew.wroteHeader {
		ew.WriteHeader(http.StatusOK)
	}
	n, err := ew.ResponseWriter.Write(p)
	if n > 0 {
		ew.ex.Bytes += int64(n)
		ew.rc.mu.Lock()
		ew.rc.s.PathBytes[ew.ex.Path] += int64(n)
		if ew.fetch {
			ew.rc.s.FetchBytes[ew.ex.Addr] += int64(n)
		}
		ew.rc.mu.Unlock()
	}
	return n, err
}

func (ew *exchangeWriter) Flush() {
	if !ew.wroteHeader {
		ew.WriteHeader(http.StatusOK)
	}
	if f, ok := ew.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (ew *exchangeWriter) Unwrap() http.ResponseWriter { return ew.ResponseWriter }

// end logs the finished exchange.
func (ew *exchangeWriter) end() {
	if !ew.wroteHeader {
		ew.ex.Status = http.StatusOK
	}
	ew.rc.mu.Lock()
	if len(ew.rc.s.Log) < MaxLog {
		ew.rc.s.Log = append(ew.rc.s.Log, ew.ex)
	}
	ew.rc.mu.Unlock()
}

// noteCDNAuth counts a CDN request refused for carrying the Hub token.
func (rc *recorder) noteCDNAuth() {
	rc.mu.Lock()
	rc.s.CDNAuthRejected++
	rc.mu.Unlock()
}

// servingAddr marks the request's response body as the content at addr.
func servingAddr(r *http.Request, addr string) {
	if ew, ok := r.Context().Value(recKey{}).(*exchangeWriter); ok {
		ew.serving(addr)
	}
}
