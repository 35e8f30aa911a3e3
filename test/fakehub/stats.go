package fakehub

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
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

	XetTokens       int            // xet-read-token requests answered 200
	Reconstructions map[string]int // CAS reconstruction requests (v1, v2, legacy; any status) per file id
	XorbFetches     []XorbFetch    // every xorb URL request, in completion order (the first MaxLog)
}

// XorbFetch is one request of a signed xorb URL.
type XorbFetch struct {
	Xorb      string      // xorb hash
	Method    string      // GET or HEAD
	Status    int         // 206 when served; 403, 404, 416 otherwise
	Ranges    []ByteRange // the requested byte ranges (parsed Range header)
	Bytes     int64       // xorb bytes served: the ranges' total when Status is 206 and Method GET
	BodyBytes int64       // body bytes written (with multipart framing), as far as the client read
}

// ByteRange is an inclusive range of bytes.
type ByteRange struct{ Start, End int64 }

// XorbRangeKey names one byte range of one xorb.
type XorbRangeKey struct {
	Xorb       string
	Start, End int64 // inclusive
}

// XorbRangeFetches counts, per xorb byte range, the GETs that served it (206).
func (s Stats) XorbRangeFetches() map[XorbRangeKey]int {
	out := map[XorbRangeKey]int{}
	for _, f := range s.XorbFetches {
		if f.Method == http.MethodGet && f.Status == http.StatusPartialContent {
			for _, r := range f.Ranges {
				out[XorbRangeKey{f.Xorb, r.Start, r.End}]++
			}
		}
	}
	return out
}

// XorbBytesServed is the xorb bytes served by GETs for one xorb ("" = all).
func (s Stats) XorbBytesServed(xorb string) int64 {
	var n int64
	for _, f := range s.XorbFetches {
		if xorb == "" || f.Xorb == xorb {
			n += f.Bytes
		}
	}
	return n
}

// XorbRefetchedBytes is how many bytes of one xorb ("" = of every xorb)
// were served by GETs more than once: 0 when every byte (so every shared
// chunk) was fetched at most once.
func (s Stats) XorbRefetchedBytes(xorb string) int64 {
	type ev struct {
		at    int64
		delta int
	}
	per := map[string][]ev{}
	for _, f := range s.XorbFetches {
		if (xorb != "" && f.Xorb != xorb) || f.Method != http.MethodGet || f.Status != http.StatusPartialContent {
			continue
		}
		for _, r := range f.Ranges {
			per[f.Xorb] = append(per[f.Xorb], ev{r.Start, 1}, ev{r.End + 1, -1})
		}
	}
	var n int64
	for _, evs := range per {
		sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
		depth := 0
		for i, e := range evs {
			if i > 0 && depth > 1 {
				n += int64(depth-1) * (e.at - evs[i-1].at)
			}
			depth += e.delta
		}
	}
	return n
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

// CDNBody is the number of body bytes the CDN listener has written since the
// Hub started (or ResetStats), and when it wrote the last of them: what
// caches fetched from the CDN, and when the last of their fills ended. The
// benchmark reads it through cmd/fakehub's -stats-listen.
func (h *Hub) CDNBody() (bytes int64, last time.Time) {
	h.stats.mu.Lock()
	defer h.stats.mu.Unlock()
	return h.stats.cdnBytes, h.stats.cdnLast
}

// recorder holds the counters.
type recorder struct {
	mu       sync.Mutex
	s        Stats
	cdnBytes int64     // body bytes written by the CDN listener
	cdnLast  time.Time // when the last of them was written
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.cdnBytes, rc.cdnLast = 0, time.Time{}
	rc.s = Stats{
		Calls: map[Request]int{}, PathBytes: map[string]int64{},
		Fetches: map[string]int{}, FetchBytes: map[string]int64{},
		Reconstructions: map[string]int{},
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
		XetTokens:       rc.s.XetTokens,
		Reconstructions: make(map[string]int, len(rc.s.Reconstructions)),
		XorbFetches:     append([]XorbFetch(nil), rc.s.XorbFetches...),
	}
	for k, v := range rc.s.Reconstructions {
		s.Reconstructions[k] = v
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
	fetch       bool       // the body is file content
	xorb        *XorbFetch // a xorb request, logged at the end
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
		if ew.ex.CDN {
			ew.rc.cdnBytes += int64(n)
			ew.rc.cdnLast = time.Now()
		}
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
	if x := ew.xorb; x != nil && len(ew.rc.s.XorbFetches) < MaxLog {
		x.Status, x.BodyBytes = ew.ex.Status, ew.ex.Bytes
		if x.Method == http.MethodGet && x.Status == http.StatusPartialContent {
			for _, r := range x.Ranges {
				x.Bytes += r.End - r.Start + 1
			}
		}
		ew.rc.s.XorbFetches = append(ew.rc.s.XorbFetches, *x)
	}
	ew.rc.mu.Unlock()
}

// noteXetToken counts a Xet token handed out.
func (rc *recorder) noteXetToken() {
	rc.mu.Lock()
	rc.s.XetTokens++
	rc.mu.Unlock()
}

// noteReconstruction counts a reconstruction request.
func (rc *recorder) noteReconstruction(fileHash string) {
	rc.mu.Lock()
	rc.s.Reconstructions[fileHash]++
	rc.mu.Unlock()
}

// servingXorb marks the request as a xorb request to log in XorbFetches.
func servingXorb(r *http.Request, f XorbFetch) {
	if ew, ok := r.Context().Value(recKey{}).(*exchangeWriter); ok {
		ew.xorb = &f
	}
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
