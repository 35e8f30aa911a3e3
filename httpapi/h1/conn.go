package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// conn is one client connection served by the fast path.
type conn struct {
	l      *Listener
	nc     net.Conn
	rf     io.ReaderFrom // nc's, if it has one (TCP: sendfile, splice)
	raw    *rawIO        // nc's socket, where the platform has it
	active atomic.Bool   // serving a request (see Listener.track)
	armed  time.Time     // the read deadline set on nc, zero for none
	served int           // requests answered
	begun  bool          // a request's first bytes are buffered
	timed  bool          // the header timeout is armed for that request
	br     *bufio.Reader
	remote string

	resp response    // reused request after request
	out  []byte      // response bytes not yet written
	body []byte      // a body held back until the response's length is known
	iov  [2][]byte   // the head and body of one writev
	bufs net.Buffers // iov, as WriteTo consumes it
	werr error       // the first write error: the connection is done
}

// serve reads and answers requests until the client closes the connection,
// a request is not simple (the connection goes to net/http), or the
// Listener closes.
//
// With raw I/O the whole conversation runs inside one RawConn.Read: step
// returns errWouldBlock when it needs bytes that have not arrived, and
// the callback's false parks the goroutine in the netpoller until they
// do. Readiness is reset only once, when RawConn.Read starts, so a
// request that arrives while the previous one is being answered is not
// missed; and a read that left the socket empty is not followed by one
// that would only return EAGAIN (see rawIO).
func (c *conn) serve() {
	var err error
	if c.raw != nil {
		err = c.raw.run(c.step)
	} else {
		err = c.step()
	}
	if err == errHandOver {
		c.l.handOver(c)
		return
	}
	c.nc.Close()
	c.l.forget(c)
}

var (
	errWouldBlock = errors.New("h1: no data yet")
	errHandOver   = errors.New("h1: not a simple request")
	errDone       = errors.New("h1: connection done")
)

// step answers the requests of the connection one after the other,
// reading as it needs bytes. It returns errWouldBlock when it must wait
// for the client (raw I/O only; it is called again when bytes arrive),
// errHandOver when a request is for net/http, and any other error when
// the connection must close.
func (c *conn) step() error {
	for {
		if !c.begun {
			if c.br.Buffered() == 0 {
				wait := c.l.cfg.IdleTimeout
				if c.served == 0 {
					wait = c.l.cfg.ReadHeaderTimeout
				}
				c.armRead(wait)
				if c.raw != nil && c.raw.emptied() {
					return errWouldBlock
				}
				if _, err := c.br.Peek(1); err != nil {
					return err
				}
			}
			if !c.l.track(c, true) {
				return errDone
			}
			// The first request's header timeout runs from the connection's start.
			c.begun, c.timed = true, c.served == 0
		}
		head, err := c.readHead()
		if err != nil {
			return err
		}
		var req http.Request
		if head == nil || !c.parse(head, &req) {
			return errHandOver
		}
		c.br.Discard(len(head))
		c.begun = false
		c.served++
		// The read deadline stays: the handler does not read from the
		// connection (a simple request has no body), and the idle wait
		// arms it again.
		if !c.serveRequest(&req) || c.l.noKeep.Load() || !c.l.track(c, false) {
			return errDone
		}
	}
}

// armRead sets the connection's read deadline d from now (none if d is
// 0). A deadline armed less than d/8 before is kept: moving the runtime's
// timer on every request of a busy keep-alive connection showed in P2's
// profile, and it only lets a wait end up to d/8 early.
func (c *conn) armRead(d time.Duration) {
	if d <= 0 {
		if !c.armed.IsZero() {
			c.nc.SetReadDeadline(time.Time{})
			c.armed = time.Time{}
		}
		return
	}
	want := time.Now().Add(d)
	if !c.armed.After(want) && !c.armed.Before(want.Add(-d/8)) {
		return
	}
	c.nc.SetReadDeadline(want)
	c.armed = want
}

// readHead returns the buffered header block of the next request, up to
// and including its empty line, without consuming it; nil if it does not
// fit the buffer.
func (c *conn) readHead() ([]byte, error) {
	for {
		n := c.br.Buffered()
		buf, _ := c.br.Peek(n)
		if end := headEnd(buf); end > 0 {
			return buf[:end], nil
		}
		if n == c.br.Size() {
			return nil, nil
		}
		if !c.timed {
			// The request has begun: from here the header timeout applies.
			c.armRead(c.l.cfg.ReadHeaderTimeout)
			c.timed = true
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			return nil, err
		}
	}
}

// headEnd is the length of the header block at the start of buf (through
// the first empty line, whether it ends in CRLF or a bare LF), or 0 if buf
// does not hold a whole one.
func headEnd(buf []byte) int {
	for i := 0; i < len(buf); {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		line := buf[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
	return 0
}

// parse reads a header block into req, or returns false if the request is
// not simple: anything net/http would treat specially, refuse or read
// leniently goes to net/http. The request's strings are substrings of one
// copy of the head, and its header values share one slice, so a request
// costs a handful of allocations however many headers it has.
func (c *conn) parse(head []byte, req *http.Request) bool {
	src := string(head)
	str := func(b []byte) string { // b is a sub-slice of head
		i := cap(head) - cap(b)
		return src[i : i+len(b)]
	}
	line, rest, ok := cutLine(head)
	if !ok {
		return false
	}
	var method string
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		method, line = http.MethodGet, line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		method, line = http.MethodHead, line[5:]
	default:
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "HTTP/1.1" || line[0] != '/' {
		return false
	}
	for _, b := range line[:sp] {
		if b <= ' ' || b >= 0x7f {
			return false
		}
	}
	target := str(line[:sp])
	u, err := parseTarget(target)
	if err != nil {
		return false
	}

	hdr := make(http.Header, 8)
	vals := make([]string, 0, 8)
	host, closeConn, haveHost := "", false, false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validName(line[:colon]) {
			return false // also obs-fold: a line starting with a space
		}
		v := trimOWS(line[colon+1:])
		if !validValue(v) {
			return false
		}
		key := canonicalKey(line[:colon])
		switch key {
		case "Host":
			if haveHost || !validHost(v) {
				return false
			}
			host, haveHost = str(v), true
			continue
		case "Connection":
			switch {
			case bytes.EqualFold(v, []byte("close")):
				closeConn = true
			case bytes.EqualFold(v, []byte("keep-alive")):
			default:
				return false // upgrades and hop-by-hop lists: net/http's business
			}
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer":
			return false
		}
		if prev := hdr[key]; prev != nil {
			hdr[key] = append(prev, str(v))
		} else {
			vals = append(vals, str(v))
			n := len(vals)
			hdr[key] = vals[n-1 : n : n] // full: a second value copies, never overwrites a neighbour
		}
	}
	if !haveHost {
		return false // net/http answers 400
	}
	*req = http.Request{
		Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Body: http.NoBody, Host: host, RemoteAddr: c.remote,
		RequestURI: target, Close: closeConn,
	}
	return true
}

// cutLine splits off the first CRLF-terminated line; a bare LF is not
// simple.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseTarget is url.ParseRequestURI for an origin-form target (it starts
// with '/'), with a shortcut for the usual case: a target made only of
// bytes that a path keeps as they are (plainPathChar: no '%', no '?')
// parses to a URL whose Path is the target and nothing else, which is what
// ParseRequestURI returns for it (TestParseTargetSameAsURL), without its
// unescape and escape passes.
func parseTarget(target string) (*url.URL, error) {
	for i := 0; i < len(target); i++ {
		if !plainPathChar[target[i]] {
			return url.ParseRequestURI(target)
		}
	}
	return &url.URL{Path: target}, nil
}

// plainPathChar is the bytes net/url neither unescapes nor escapes in a
// path: letters, digits, "-._~" and "$&+,/:;=@".
var plainPathChar = alnumAnd("-._~$&+,/:;=@")

// tokenChar is RFC 9110's tchar.
var tokenChar = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd is a byte table of the ASCII letters and digits and extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

func validName(b []byte) bool {
	for _, ch := range b {
		if !tokenChar[ch] {
			return false
		}
	}
	return true
}

// validValue refuses control characters but tab (net/http refuses them too).
func validValue(b []byte) bool {
	for _, ch := range b {
		if (ch < ' ' && ch != '\t') || ch == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts what a host[:port] is made of; anything else (net/http
// answers 400 to some) goes to net/http.
func validHost(b []byte) bool {
	for _, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']' || ch == '_':
		default:
			return false
		}
	}
	return true
}

// canonicalKey is http.CanonicalHeaderKey without an allocation for the
// headers HF clients send.
func canonicalKey(b []byte) string {
	switch string(b) {
	case "Host", "host":
		return "Host"
	case "User-Agent", "user-agent":
		return "User-Agent"
	case "Accept", "accept":
		return "Accept"
	case "Accept-Encoding", "accept-encoding":
		return "Accept-Encoding"
	case "Accept-Language", "accept-language":
		return "Accept-Language"
	case "Authorization", "authorization":
		return "Authorization"
	case "Connection", "connection":
		return "Connection"
	case "Range", "range":
		return "Range"
	case "If-None-Match", "if-none-match":
		return "If-None-Match"
	case "If-Range", "if-range":
		return "If-Range"
	case "Origin", "origin":
		return "Origin"
	case "Referer", "referer":
		return "Referer"
	case "Cache-Control", "cache-control":
		return "Cache-Control"
	case "Sec-Fetch-Mode", "sec-fetch-mode":
		return "Sec-Fetch-Mode"
	case "X-Request-Id", "x-request-id":
		return "X-Request-Id"
	}
	return http.CanonicalHeaderKey(string(b))
}

// serveRequest runs the handler for req and finishes its response. It
// reports whether the connection may carry another request.
func (c *conn) serveRequest(parsed *http.Request) (keep bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := parsed.WithContext(ctx) // the one copy on the heap: parse's stays on the stack
	w := &c.resp
	w.reset(c, req)
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.l.log.Error("panic serving request", "remote", c.remote, "path", req.URL.Path, "panic", p, "stack", string(debug.Stack()))
			}
			keep = false
		}
	}()
	c.l.handler.ServeHTTP(w, req)
	return w.finish()
}
