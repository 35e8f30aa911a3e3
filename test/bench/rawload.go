package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rawLoadFor is a lean HTTP/1.1 keep-alive load generator for small
// responses (P2). net/http's client costs ~50 µs of CPU per request, enough
// to saturate a 2-core machine by itself; this one does what wrk does:
// conns TCP connections, each sending "GET path" back to back (one request
// in flight per connection, no pipelining), reading the response with a
// bufio.Reader and parsing the status line and headers by hand, with no
// allocation per request.
//
// Every response must be "200" with a Content-Length of exactly bodySize
// and no Transfer-Encoding or "Connection: close"; anything else, or a short
// body, or the server closing the connection, fails the run with the status
// line in the error. The latency of a request is the time from its write to
// its last body byte. All connections are dialed first, then released
// together; each stops at the first request that ends after d (or at once
// when another connection failed).
//
// cpu is the process's own user+system CPU time (getrusage RUSAGE_SELF)
// from the release to the end of the last connection: during P2 the bench
// process runs nothing else, so cpu/requests is the generator's own cost
// per request.
func rawLoadFor(rawURL string, conns int, d time.Duration, bodySize int64) (res loadResult, cpu time.Duration, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return res, 0, err
	}
	if u.Scheme != "http" {
		return res, 0, fmt.Errorf("rawLoadFor %s: only http:// URLs", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: hfcache-bench\r\n\r\n")

	// Room for ~100k requests/s in total without growing the slices.
	perConn := int(100_000*d.Seconds())/max(conns, 1) + 1024
	parts := make([]rawPart, conns)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	var deadline time.Time
	var abort bool       // a dial failed: release the gate for nothing
	var stop atomic.Bool // a connection failed: the others stop too
	for i := range conns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			p := &parts[i]
			p.lat = make([]time.Duration, 0, perConn)
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			p.err = err
			ready.Done()
			if err != nil {
				return
			}
			defer c.Close()
			<-gate
			if abort {
				return
			}
			if err := c.SetDeadline(deadline.Add(30 * time.Second)); err != nil {
				p.err = err
				return
			}
			p.run(c, req, bodySize, deadline, &stop)
			if p.err != nil {
				stop.Store(true)
				p.err = fmt.Errorf("GET %s (connection %d, after %d responses): %w", rawURL, i, p.n, p.err)
			}
		}()
	}
	ready.Wait()
	for i := range parts {
		if parts[i].err != nil {
			abort = true
			close(gate)
			done.Wait()
			return res, 0, fmt.Errorf("rawLoadFor %s: %w", rawURL, parts[i].err)
		}
	}
	ru0 := rusageCPU()
	start := time.Now()
	deadline = start.Add(d)
	close(gate)
	done.Wait()
	res.elapsed = time.Since(start)
	cpu = rusageCPU() - ru0

	total := 0
	var errs []error
	for i := range parts {
		if parts[i].err != nil {
			errs = append(errs, parts[i].err)
		}
		total += len(parts[i].lat)
	}
	if len(errs) > 0 {
		// Report the first few: 64 copies of the same error say nothing more.
		return res, cpu, errors.Join(errs[:min(len(errs), 3)]...)
	}
	res.lat = make([]time.Duration, 0, total)
	for i := range parts {
		res.requests += parts[i].n
		res.bytes += parts[i].bytes
		res.lat = append(res.lat, parts[i].lat...)
	}
	slices.Sort(res.lat)
	return res, cpu, nil
}

// rawPart is one connection's share of a rawLoadFor run.
type rawPart struct {
	n, bytes int64
	lat      []time.Duration
	err      error
	status   [128]byte // the last status line, for errors
	statusN  int
}

func (p *rawPart) statusLine() string {
	if p.statusN == 0 {
		return "no status line"
	}
	return fmt.Sprintf("status line %q", p.status[:p.statusN])
}

// run sends requests on c back to back until one ends after deadline, or
// another connection failed.
func (p *rawPart) run(c net.Conn, req []byte, bodySize int64, deadline time.Time, stop *atomic.Bool) {
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			p.err = fmt.Errorf("write: %w", err)
			return
		}
		if err := p.readResponse(br, bodySize); err != nil {
			p.err = err
			return
		}
		t1 := time.Now()
		p.n++
		p.bytes += bodySize
		p.lat = append(p.lat, t1.Sub(t0))
		if !t1.Before(deadline) || stop.Load() {
			return
		}
	}
}

// readResponse reads one response: a 200 with Content-Length bodySize, and
// its body.
func (p *rawPart) readResponse(br *bufio.Reader, bodySize int64) error {
	p.statusN = 0
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return errors.New("the server closed the connection")
		}
		return fmt.Errorf("reading the status line: %w", err)
	}
	p.statusN = copy(p.status[:], trimEOL(line))
	// "HTTP/1.x 200 ..." (the reason phrase may be empty).
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || string(line[9:12]) != "200" || (len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return fmt.Errorf("%s, want 200", p.statusLine())
	}
	cl := int64(-1)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("reading the headers (%s): %w", p.statusLine(), err)
		}
		line = trimEOL(line)
		if len(line) == 0 {
			break
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 {
			return fmt.Errorf("malformed header line %q (%s)", line, p.statusLine())
		}
		name, val := line[:colon], trimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			v, ok := parseDecimal(val)
			if !ok || (cl >= 0 && v != cl) {
				return fmt.Errorf("bad Content-Length %q (%s)", val, p.statusLine())
			}
			cl = v
		case asciiEqualFold(name, "transfer-encoding"):
			return fmt.Errorf("Transfer-Encoding: %s (%s), want a plain Content-Length body", val, p.statusLine())
		case asciiEqualFold(name, "connection"):
			if containsFold(val, "close") {
				return fmt.Errorf("Connection: %s (%s): the server will not keep the connection alive", val, p.statusLine())
			}
		}
	}
	if cl != bodySize {
		if cl < 0 {
			return fmt.Errorf("no Content-Length (%s), want %d", p.statusLine(), bodySize)
		}
		return fmt.Errorf("Content-Length %d (%s), want %d", cl, p.statusLine(), bodySize)
	}
	if n, err := br.Discard(int(bodySize)); err != nil {
		return fmt.Errorf("short body: %d of %d bytes (%s): %w", n, bodySize, p.statusLine(), err)
	}
	return nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiEqualFold reports whether b equals the lower-case s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lowerASCII(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether b contains the lower-case s, ignoring case.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if asciiEqualFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// rusageCPU is the process's user+system CPU time so far.
func rusageCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
