package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// servers runs h twice: behind a Listener (the fast path, net/http behind
// it) and behind a plain net/http server. Both are stopped at the end.
type servers struct {
	fast, std string
	l         *Listener
	fastSrv   *http.Server
}

func serveBoth(t *testing.T, h http.Handler) *servers {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, h, Config{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	fastSrv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go fastSrv.Serve(l)
	stdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stdSrv := &http.Server{Handler: h}
	go stdSrv.Serve(stdLn)
	t.Cleanup(func() {
		fastSrv.Close()
		l.Close()
		l.CloseConns()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Wait(ctx); err != nil {
			t.Errorf("fast connections still open: %v", err)
		}
		stdSrv.Close()
	})
	return &servers{fast: inner.Addr().String(), std: stdLn.Addr().String(), l: l, fastSrv: fastSrv}
}

// exchange is one raw request and the response read back.
type exchange struct {
	resp *http.Response
	body []byte
	err  error // reading the response or its body
}

// client is one raw connection.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, raw); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read(method string) exchange {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return exchange{err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return exchange{resp: resp, body: body, err: err}
}

func (c *client) do(method, raw string) exchange {
	c.send(raw)
	return c.read(method)
}

// closed reports whether the server closed the connection: whether a
// further request goes unanswered.
func (c *client) closed() bool {
	c.nc.Write([]byte(get("/small")))
	ex := c.read("GET")
	return ex.err != nil
}

// ended reports whether the server ends the connection (within 5 s) without
// sending anything more.
func (c *client) ended() bool {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// same checks that the fast path and net/http answered alike: status,
// header (but Date), body, framing, and whether the error and the
// connection's fate match.
func same(t *testing.T, name string, fast, std exchange) {
	t.Helper()
	if (fast.err != nil) != (std.err != nil) {
		t.Fatalf("%s: fast err %v, net/http err %v", name, fast.err, std.err)
	}
	if fast.resp == nil || std.resp == nil {
		if (fast.resp == nil) != (std.resp == nil) {
			t.Fatalf("%s: fast %v, net/http %v", name, fast.resp, std.resp)
		}
		return
	}
	if fast.resp.StatusCode != std.resp.StatusCode {
		t.Errorf("%s: status %d, net/http %d", name, fast.resp.StatusCode, std.resp.StatusCode)
	}
	fh, sh := fast.resp.Header.Clone(), std.resp.Header.Clone()
	if (fh.Get("Date") == "") != (sh.Get("Date") == "") || len(fh["Date"]) != len(sh["Date"]) {
		t.Errorf("%s: Date %q, net/http %q", name, fh["Date"], sh["Date"])
	}
	if d := sh.Get("Date"); d == fixedDate && fh.Get("Date") != d {
		t.Errorf("%s: the handler's Date %q, sent %q", name, d, fh.Get("Date"))
	}
	fh.Del("Date")
	sh.Del("Date")
	if ct := sh.Get("Content-Type"); strings.HasPrefix(ct, "multipart/byteranges") {
		// A random boundary: compare the rest.
		_, fb, _ := strings.Cut(fh.Get("Content-Type"), "boundary=")
		_, sb, _ := strings.Cut(ct, "boundary=")
		fh.Del("Content-Type")
		sh.Del("Content-Type")
		fast.body = bytes.ReplaceAll(fast.body, []byte(fb), []byte("B"))
		std.body = bytes.ReplaceAll(std.body, []byte(sb), []byte("B"))
	}
	if fmt.Sprint(fh) != fmt.Sprint(sh) {
		t.Errorf("%s: header\n fast %v\n  std %v", name, fh, sh)
	}
	if fast.resp.ContentLength != std.resp.ContentLength || fmt.Sprint(fast.resp.TransferEncoding) != fmt.Sprint(std.resp.TransferEncoding) {
		t.Errorf("%s: framing: fast length %d %v, net/http %d %v", name, fast.resp.ContentLength, fast.resp.TransferEncoding, std.resp.ContentLength, std.resp.TransferEncoding)
	}
	if fast.resp.Close != std.resp.Close {
		t.Errorf("%s: Close %v, net/http %v", name, fast.resp.Close, std.resp.Close)
	}
	if !bytes.Equal(fast.body, std.body) {
		t.Errorf("%s: body %d bytes %.40q, net/http %d bytes %.40q", name, len(fast.body), fast.body, len(std.body), std.body)
	}
}

// fixedDate is the Date a handler of the tests sets itself.
const fixedDate = "Mon, 02 Jan 2006 15:04:05 GMT"

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: cache.example\r\n" + strings.Join(extra, "") + "\r\n"
}

func head(path string, extra ...string) string {
	return "HEAD " + path + " HTTP/1.1\r\nHost: cache.example\r\n" + strings.Join(extra, "") + "\r\n"
}

// testHandler covers what the cache's handlers do to a ResponseWriter.
func testHandler(t *testing.T, fastHits *atomic.Int64) http.Handler {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	file := filepath.Join(dir, "blob")
	if err := os.WriteFile(file, big, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "5")
		w.Header().Set("X-Repo-Commit", "abc")
		w.Header().Set("Access-Control-Expose-Headers", "X-Repo-Commit, ETag")
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":"Entry not found"}`+"\n")
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html><body>hi</body></html>"))
	})
	mux.HandleFunc("/nothing", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for range 100 {
			w.Write(bytes.Repeat([]byte("x"), 1000)) // past the hold-back: chunked
		}
	})
	mux.HandleFunc("/flushed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("first"))
		http.NewResponseController(w).Flush()
		w.Write([]byte("second"))
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("ETag", `"e1"`)
		http.ServeContent(w, r, "", time.Time{}, f)
	})
	mux.HandleFunc("/copy", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, f) // ReadFrom with an *os.File: sendfile
	})
	mux.HandleFunc("/bigwrite", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(big[:100])       // small: held with the head
		w.Write(big[100:])       // one write past rawWriteMax
		w.(http.Flusher).Flush() // nothing left to send
	})
	mux.HandleFunc("/headlen", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusGone)
	})
	mux.HandleFunc("/inject", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Disposition", "inline; filename=\"a\r\nSet-Cookie: x=1\"")
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/late-header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.Header().Set("X-Too-Late", "1") // not sent: the head is fixed at WriteHeader
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/dated", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", fixedDate)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "dated")
	})
	mux.HandleFunc("/not-modified", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Etag", `"e1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("bye"))
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("only fifty bytes.................................."))
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(bytes.Repeat([]byte("y"), 50000))
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s host=%s auth=%s ua=%s q=%s body=%q", r.Method, r.URL.EscapedPath(), r.Proto, r.Host,
			r.Header.Get("Authorization"), r.Header.Get("User-Agent"), r.URL.Query().Get("a"), b)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*response); ok && fastHits != nil {
			fastHits.Add(1)
		}
		mux.ServeHTTP(w, r)
	})
}

func TestSameAsNetHTTP(t *testing.T) {
	var fastHits atomic.Int64
	s := serveBoth(t, testHandler(t, &fastHits))
	cases := []struct{ name, method, raw string }{
		{"small", "GET", get("/small")},
		{"small HEAD", "HEAD", head("/small")},
		{"json 404", "GET", get("/json")},
		{"json 404 HEAD", "HEAD", head("/json")},
		{"sniffed type", "GET", get("/sniff")},
		{"empty", "GET", get("/nothing")},
		{"empty HEAD", "HEAD", head("/nothing")},
		{"chunked", "GET", get("/chunked")},
		{"flushed", "GET", get("/flushed")},
		{"file", "GET", get("/file")},
		{"one big write", "GET", get("/bigwrite")},
		{"file HEAD", "HEAD", head("/file")},
		{"file range", "GET", get("/file", "Range: bytes=10-99\r\n")},
		{"file suffix range", "GET", get("/file", "range: bytes=-7\r\n")},
		{"file multi range", "GET", get("/file", "Range: bytes=0-9,100-199\r\n")},
		{"file bad range", "GET", get("/file", "Range: bytes=99999999-\r\n")},
		{"file not modified", "GET", get("/file", "If-None-Match: \"e1\"\r\n")},
		{"file if-range stale", "GET", get("/file", "Range: bytes=0-1\r\nIf-Range: \"other\"\r\n")},
		{"copy (sendfile)", "GET", get("/copy")},
		{"HEAD with length", "HEAD", head("/headlen")},
		{"204", "GET", get("/nocontent")},
		{"http.Error", "GET", get("/error")},
		{"header injection", "GET", get("/inject")},
		{"header after WriteHeader", "GET", get("/late-header")},
		{"handler closes", "GET", get("/close")},
		{"handler's own Date", "GET", get("/dated")},
		{"304 with a type and length", "GET", get("/not-modified")},
		{"echo", "GET", get("/echo/a%2Fb/c?a=1&b=2", "Authorization: Bearer hf_x\r\nuser-agent: huggingface_hub/1.0\r\n")},
		{"not found", "GET", get("/no/such/route")},
		// Not simple: net/http answers on the same connection.
		{"POST with body", "POST", "POST /echo HTTP/1.1\r\nHost: cache.example\r\nContent-Length: 4\r\n\r\nabcd"},
		{"HTTP/1.0", "GET", "GET /small HTTP/1.0\r\nHost: cache.example\r\n\r\n"},
		{"bare LF", "GET", "GET /small HTTP/1.1\nHost: cache.example\n\n"},
		{"no Host", "GET", "GET /small HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET", "GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{"obs-fold", "GET", "GET /echo HTTP/1.1\r\nHost: cache.example\r\nUser-Agent: a\r\n b\r\n\r\n"},
		{"space in name", "GET", "GET /echo HTTP/1.1\r\nHost: cache.example\r\nUser Agent: a\r\n\r\n"},
		{"absolute form", "GET", "GET http://cache.example/small HTTP/1.1\r\nHost: cache.example\r\n\r\n"},
		{"huge header", "GET", get("/echo", "X-Big: "+strings.Repeat("b", 10000)+"\r\n")},
		{"expect", "GET", get("/small", "Expect: 100-continue\r\n")},
		{"OPTIONS", "OPTIONS", "OPTIONS /small HTTP/1.1\r\nHost: cache.example\r\n\r\n"},
	}
	for _, tc := range cases {
		fc, sc := dial(t, s.fast), dial(t, s.std)
		same(t, tc.name, fc.do(tc.method, tc.raw), sc.do(tc.method, tc.raw))
		if fc.closed() != sc.closed() {
			t.Errorf("%s: connection closed: fast %v, net/http %v", tc.name, fc.closed(), sc.closed())
		}
	}
	if fastHits.Load() < 20 {
		t.Errorf("only %d requests took the fast path", fastHits.Load())
	}
}

// TestBrokenResponses: a short body and an aborted handler end the
// connection, and the client sees an error, not a complete response.
func TestBrokenResponses(t *testing.T) {
	s := serveBoth(t, testHandler(t, nil))
	for _, path := range []string{"/short", "/abort"} {
		c := dial(t, s.fast)
		ex := c.do("GET", get(path))
		if ex.err == nil && ex.resp != nil {
			t.Errorf("%s: a complete response: %d bytes", path, len(ex.body))
		}
		if !c.closed() {
			t.Errorf("%s: connection left open", path)
		}
	}
}

// TestKeepAliveAndHandOver: one connection carries fast requests,
// pipelined ones, then a request that is not simple; from there net/http
// answers, and the connection still works.
func TestKeepAliveAndHandOver(t *testing.T) {
	var fastHits atomic.Int64
	s := serveBoth(t, testHandler(t, &fastHits))
	c := dial(t, s.fast)
	for i := range 3 {
		ex := c.do("GET", get("/small"))
		if ex.err != nil || string(ex.body) != "hello" {
			t.Fatalf("request %d: %v %q", i, ex.err, ex.body)
		}
	}
	// Pipelined: three requests in one write, three answers in order.
	c.send(get("/small") + head("/small") + get("/echo?a=z"))
	for i, m := range []string{"GET", "HEAD", "GET"} {
		ex := c.read(m)
		if ex.err != nil {
			t.Fatalf("pipelined %d: %v", i, ex.err)
		}
		if i == 2 && !strings.Contains(string(ex.body), "q=z") {
			t.Fatalf("pipelined answer out of order: %q", ex.body)
		}
	}
	if got := fastHits.Load(); got != 6 {
		t.Fatalf("fast path served %d of 6", got)
	}
	ex := c.do("POST", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if ex.err != nil || !strings.Contains(string(ex.body), `body="abc"`) {
		t.Fatalf("POST: %v %q", ex.err, ex.body)
	}
	ex = c.do("GET", get("/small"))
	if ex.err != nil || string(ex.body) != "hello" {
		t.Fatalf("GET after hand-over: %v %q", ex.err, ex.body)
	}
	if got := fastHits.Load(); got != 6 {
		t.Fatalf("a handed-over connection went back to the fast path (%d)", got)
	}
	// A client's Connection: close is honoured.
	c2 := dial(t, s.fast)
	ex = c2.do("GET", get("/small", "Connection: close\r\n"))
	if ex.err != nil || !ex.resp.Close || !c2.closed() {
		t.Fatalf("Connection: close: %v close=%v", ex.err, ex.resp != nil && ex.resp.Close)
	}
}

// TestPartialHead: a request that arrives in pieces is still one request.
func TestPartialHead(t *testing.T) {
	var fastHits atomic.Int64
	s := serveBoth(t, testHandler(t, &fastHits))
	c := dial(t, s.fast)
	raw := get("/small", "User-Agent: slow\r\n")
	for i := 0; i < len(raw); i += 7 {
		c.send(raw[i:min(i+7, len(raw))])
	}
	ex := c.read("GET")
	if ex.err != nil || string(ex.body) != "hello" || fastHits.Load() != 1 {
		t.Fatalf("%v %q fast=%d", ex.err, ex.body, fastHits.Load())
	}
}

// TestHeaderTimeout: a request whose head does not complete in time ends
// the connection.
func TestHeaderTimeout(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, testHandler(t, nil), Config{ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: 100 * time.Millisecond})
	defer l.Close()
	c := dial(t, inner.Addr().String())
	c.send("GET /small HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	if !c.ended() {
		t.Fatal("connection still open")
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("closed after %v", time.Since(start))
	}
	// An idle kept-alive connection is closed after IdleTimeout.
	c = dial(t, inner.Addr().String())
	if ex := c.do("GET", get("/small")); ex.err != nil {
		t.Fatal(ex.err)
	}
	if !c.ended() {
		t.Fatal("idle connection still open")
	}
}

// TestCloseIsGraceful: Close ends idle connections at once, lets a
// request under way finish (its connection then closes), and Wait sees
// them all gone.
func TestCloseIsGraceful(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		w.Write([]byte("done"))
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, h, Config{})
	idle := dial(t, inner.Addr().String())
	if ex := idle.do("GET", get("/")); ex.err != nil {
		t.Fatal(ex.err)
	}
	busy := dial(t, inner.Addr().String())
	busy.send(get("/slow"))
	<-started
	l.Close()
	if !idle.closed() {
		t.Fatal("idle connection not closed by Close")
	}
	if _, err := net.DialTimeout("tcp", inner.Addr().String(), time.Second); err == nil {
		t.Error("still accepting after Close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := l.Wait(ctx); err == nil {
		t.Fatal("Wait returned while a request was under way")
	}
	cancel()
	close(release)
	ex := busy.read("GET")
	if ex.err != nil || string(ex.body) != "done" || !ex.resp.Close {
		t.Fatalf("request under way: %v %q", ex.err, ex.body)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close")
	}
}

// TestKeepAlivesDisabled: after SetKeepAlivesEnabled(false) each response
// says Connection: close and the connection ends.
func TestKeepAlivesDisabled(t *testing.T) {
	s := serveBoth(t, testHandler(t, nil))
	s.l.SetKeepAlivesEnabled(false)
	c := dial(t, s.fast)
	ex := c.do("GET", get("/small"))
	if ex.err != nil || !ex.resp.Close || !c.closed() {
		t.Fatalf("%v close=%v", ex.err, ex.resp != nil && ex.resp.Close)
	}
}

// TestNetHTTPClient drives the fast path with Go's own client, keep-alive
// and all, over many requests.
func TestNetHTTPClient(t *testing.T) {
	var fastHits atomic.Int64
	s := serveBoth(t, testHandler(t, &fastHits))
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer cl.CloseIdleConnections()
	for i := range 200 {
		path := []string{"/small", "/file", "/chunked", "/json", "/copy"}[i%5]
		resp, err := cl.Get("http://" + s.fast + path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || (resp.ContentLength >= 0 && n != resp.ContentLength) {
			t.Fatalf("%s: %d bytes of %d: %v", path, n, resp.ContentLength, err)
		}
	}
	if fastHits.Load() != 200 {
		t.Fatalf("fast path served %d of 200", fastHits.Load())
	}
}

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (d *deadlineConn) SetReadDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// TestArmRead: a read deadline is moved only when the one armed is more
// than an eighth of the wait early, or later than wanted; 0 clears it.
func TestArmRead(t *testing.T) {
	dc := &deadlineConn{}
	c := &conn{nc: dc}
	c.armRead(time.Minute)
	c.armRead(time.Minute) // within a minute/8 of the first: kept
	if len(dc.set) != 1 {
		t.Fatalf("deadlines set: %v, want one", dc.set)
	}
	c.armed = c.armed.Add(-time.Minute / 4) // as if armed 15 s ago
	c.armRead(time.Minute)
	if len(dc.set) != 2 || time.Until(dc.set[1]) < 59*time.Second {
		t.Fatalf("an old deadline was not moved: %v", dc.set)
	}
	c.armRead(time.Second) // shorter: the header timeout of a new request
	if len(dc.set) != 3 || time.Until(dc.set[2]) > time.Second {
		t.Fatalf("a shorter wait did not move the deadline in: %v", dc.set)
	}
	c.armRead(0)
	c.armRead(0)
	if len(dc.set) != 4 || !dc.set[3].IsZero() || !c.armed.IsZero() {
		t.Fatalf("0 did not clear the deadline once: %v", dc.set)
	}
}

// TestRequestDuringResponse: a request that arrives while the one before
// it is still being answered (after the read that emptied the socket) is
// answered, not left waiting for more bytes.
func TestRequestDuringResponse(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gate" {
			started <- struct{}{}
			<-release
		}
		w.Write([]byte(r.URL.Path))
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, h, Config{IdleTimeout: time.Minute})
	defer l.Close()
	c := dial(t, inner.Addr().String())
	for i := range 20 {
		c.send(get("/gate"))
		<-started
		c.send(get("/next"))
		release <- struct{}{}
		for _, want := range []string{"/gate", "/next"} {
			if ex := c.read("GET"); ex.err != nil || string(ex.body) != want {
				t.Fatalf("round %d: %q, %v; want %q", i, ex.body, ex.err, want)
			}
		}
	}
}

// TestRandomConversations drives many connections at once, each with a
// random mix of requests sent whole, in small pieces, or several at a
// time before their answers are read (sometimes more than the read buffer
// holds), sometimes ending with a POST that
// hands the connection to net/http. Every answer must be the one for its
// request, in order.
func TestRandomConversations(t *testing.T) {
	s := serveBoth(t, testHandler(t, nil))
	const conns, perConn = 16, 40
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			errs <- conversation(s.fast, rand.New(rand.NewPCG(uint64(i), 7)), perConn)
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func conversation(addr string, rng *rand.Rand, n int) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	type pending struct{ method, want string }
	for sent := 0; sent < n; {
		// A batch of 1-4 requests, all written before any answer is read;
		// sometimes 200, more than the server's read buffer holds.
		size := 1 + rng.IntN(4)
		if rng.IntN(8) == 0 {
			size = 200
		}
		var batch []pending
		var raw strings.Builder
		for range size {
			k := sent + len(batch)
			switch rng.IntN(3) {
			case 0:
				raw.WriteString(get("/small"))
				batch = append(batch, pending{"GET", "hello"})
			case 1:
				raw.WriteString(head("/small"))
				batch = append(batch, pending{"HEAD", ""})
			default:
				raw.WriteString(get(fmt.Sprintf("/echo?a=%d", k), "User-Agent: r\r\n"))
				batch = append(batch, pending{"GET", fmt.Sprintf("q=%d body", k)})
			}
		}
		if sent+len(batch) >= n && rng.IntN(2) == 0 {
			raw.WriteString("POST /echo?a=last HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
			batch = append(batch, pending{"POST", `q=last body="ok"`})
		}
		// Whole, or in pieces of 1-40 bytes.
		b := []byte(raw.String())
		for len(b) > 0 {
			m := len(b)
			if rng.IntN(2) == 0 {
				m = min(m, 1+rng.IntN(40))
			}
			if _, err := nc.Write(b[:m]); err != nil {
				return err
			}
			b = b[m:]
		}
		for _, p := range batch {
			resp, err := http.ReadResponse(br, &http.Request{Method: p.method})
			if err != nil {
				return fmt.Errorf("request %d (%s): %v", sent, p.method, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case err != nil:
				return fmt.Errorf("request %d: body: %v", sent, err)
			case p.want == "hello" && string(body) != "hello",
				p.want == "" && len(body) != 0,
				p.want != "hello" && p.want != "" && !strings.Contains(string(body), p.want):
				return fmt.Errorf("request %d (%s): got %q, want %q", sent, p.method, body, p.want)
			}
			sent++
		}
	}
	return nil
}

// TestReadFillsBuffer: requests that fill the read buffer exactly, with
// more waiting in the socket, are all answered. The read that filled the
// buffer did not empty the socket, so the next request must be read, not
// waited for: no new bytes will arrive to wake a wait.
func TestReadFillsBuffer(t *testing.T) {
	s := serveBoth(t, testHandler(t, nil))
	one := get("/small")
	one = get("/small", "X-P: "+strings.Repeat("p", 64-len(one)-len("X-P: \r\n"))+"\r\n")
	if len(one) != 64 || bufSize%64 != 0 {
		t.Fatalf("a request of %d bytes does not tile the %d-byte buffer", len(one), bufSize)
	}
	n := bufSize/64 + 64
	c := dial(t, s.fast)
	c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	c.send(strings.Repeat(one, n))
	for i := range n {
		if ex := c.read("GET"); ex.err != nil || string(ex.body) != "hello" {
			t.Fatalf("request %d of %d: %q, %v", i, n, ex.body, ex.err)
		}
	}
}
