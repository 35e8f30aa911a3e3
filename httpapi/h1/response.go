package h1

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// rawWriteMax is the largest write made with a raw system call (see
// rawIO): a larger one copies long enough that the runtime should be free
// to run other goroutines on the processor meanwhile, as it does for a
// plain Write.
const rawWriteMax = 64 << 10

// holdBack is how much body the fast path keeps before the response's
// length is known: a handler that writes less and returns gets a
// Content-Length and one write; more, and the response is chunked.
const holdBack = 32 << 10

// flushAt is how much output is gathered before it is written, once the
// head is out: small writes are coalesced, as net/http's 4 KiB buffer
// does, and a streamed body is not held back longer than that.
const flushAt = 4 << 10

// response is the fast path's http.ResponseWriter. It follows net/http's
// response rules (see chunkWriter.writeHeader in net/http): the status and
// header are fixed at WriteHeader; a body of unknown length is chunked
// unless the handler returns within holdBack bytes; HEAD, 1xx, 204 and 304
// have no body; Date is added; a short body closes the connection.
type response struct {
	c      *conn
	req    *http.Request
	hdr    http.Header
	isHead bool

	status     int
	wrote      bool  // WriteHeader happened: the head is rendered in c.out, framing aside
	sent       bool  // framing decided and the head ended
	cl         int64 // declared or computed Content-Length, -1 if none
	written    int64 // body bytes the handler wrote
	hasType    bool
	chunked    bool
	closeAfter bool
}

func (w *response) reset(c *conn, req *http.Request) {
	hdr := w.hdr
	if hdr == nil {
		hdr = make(http.Header, 16)
	} else {
		clear(hdr)
	}
	*w = response{c: c, req: req, hdr: hdr, isHead: req.Method == http.MethodHead, cl: -1, closeAfter: req.Close}
	c.out, c.body = c.out[:0], c.body[:0]
}

func (w *response) Header() http.Header { return w.hdr }

func bodyAllowedForStatus(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

func (w *response) bodyAllowed() bool { return !w.isHead && bodyAllowedForStatus(w.status) }

// WriteHeader renders the status line and the handler's header into the
// output buffer: later changes to the header map are not sent, as with
// net/http. The framing headers (Content-Length or Transfer-Encoding,
// Connection) are added when the head is sent.
func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.wrote || code < 200 {
		return // a second call, or an informational response: not sent
	}
	w.wrote, w.status = true, code
	h := w.hdr

	c := w.c
	b := append(c.out, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	b = append(b, "\r\n"...)
	// The fields in the map's order: HTTP gives the order of different
	// fields no meaning, and sorting a hit's dozen keys cost 2.5% of a
	// node's CPU under P2's load (docs/PERFORMANCE.md, session 10). The
	// fields the head's framing depends on are noted on the way, instead
	// of a lookup each.
	hasDate := false
	for k, vs := range h {
		switch k {
		case "Content-Length":
			if len(vs) > 0 {
				if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil && n >= 0 {
					w.cl = n
				}
			}
			continue // framing: added when the head is sent
		case "Connection":
			if len(vs) > 0 && hasToken(vs[0], "close") {
				w.closeAfter = true
			}
			continue
		case "Transfer-Encoding":
			continue
		case "Content-Type":
			w.hasType = true
			if code == http.StatusNotModified {
				continue
			}
		case "Date":
			hasDate = true
		}
		if !validName([]byte(k)) {
			continue // as net/http: an invalid name is dropped
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	if !bodyAllowedForStatus(code) {
		w.cl = -1
		if code == http.StatusNotModified {
			w.hasType = true // suppressed above, never sniffed
		}
	}
	if !hasDate {
		b = append(b, "Date: "...)
		b = append(b, c.l.httpDate()...)
		b = append(b, "\r\n"...)
	}
	c.out = b
}

// appendValue appends v with line breaks made spaces and surrounding
// blanks trimmed, as net/http writes header values: a value can never
// split the head.
func appendValue(b []byte, v string) []byte {
	if n := len(v); n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n-1] == ' ' || v[n-1] == '\t') {
		v = strings.Trim(v, " \t")
	}
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch == '\r' || ch == '\n' {
			ch = ' '
		}
		b = append(b, ch)
	}
	return b
}

// finishHead ends the head in c.out: the framing headers, then the empty
// line. done says the handler has returned, so a held-back body's length
// is known.
func (w *response) finishHead(done bool) {
	w.sent = true
	c := w.c
	b := c.out
	if bodyAllowedForStatus(w.status) && w.cl < 0 && done && (!w.isHead || w.written > 0) {
		w.cl = w.written // the handler returned: its body is all here
	}
	switch {
	case !bodyAllowedForStatus(w.status):
	case w.cl >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.cl, 10)
		b = append(b, "\r\n"...)
	case w.isHead:
	default:
		w.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if !w.hasType && bodyAllowedForStatus(w.status) && len(c.body) > 0 {
		b = append(b, "Content-Type: "...)
		b = append(b, http.DetectContentType(c.body)...)
		b = append(b, "\r\n"...)
	}
	if w.closeAfter || c.l.noKeep.Load() || c.l.shutting.Load() {
		w.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.out = b
	// The held-back body follows the head, framed.
	if len(c.body) > 0 {
		body := c.body
		c.body = c.body[:0]
		w.emit(body)
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		if w.isHead {
			w.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	c := w.c
	if !w.sent {
		if len(c.body)+len(p) <= holdBack {
			c.body = append(c.body, p...)
			return len(p), nil
		}
		w.finishHead(false)
	}
	if err := w.emit(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// emit queues body bytes behind the head, framed, writing out what no
// longer fits the buffer.
func (w *response) emit(p []byte) error {
	c := w.c
	if w.chunked {
		c.out = strconv.AppendInt(c.out, int64(len(p)), 16)
		c.out = append(c.out, "\r\n"...)
	}
	if len(c.out)+len(p) <= flushAt {
		c.out = append(c.out, p...)
	} else if err := c.write(p); err != nil {
		return err
	}
	if w.chunked {
		c.out = append(c.out, "\r\n"...)
	}
	return c.werr
}

// write sends the buffered output and then p, with one writev.
func (c *conn) write(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	var err error
	switch {
	case c.raw != nil && len(c.out)+len(p) <= rawWriteMax:
		err = c.raw.write(c.out, p)
	case len(p) == 0 && len(c.out) == 0:
	case len(p) == 0:
		_, err = c.nc.Write(c.out)
	case len(c.out) == 0:
		_, err = c.nc.Write(p)
	default:
		c.iov = [2][]byte{c.out, p}
		c.bufs = c.iov[:]
		_, err = c.bufs.WriteTo(c.nc) // a field: a local would move to the heap
		c.iov = [2][]byte{}
	}
	c.out = c.out[:0]
	c.werr = err
	return err
}

// Flush sends the head and whatever body is buffered. A response whose
// length is not known yet is chunked from here on.
func (w *response) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.finishHead(false)
	}
	w.c.write(nil)
}

// ReadFrom sends src as the body. With a known length it goes to the
// socket's own ReadFrom, so a file is sent with sendfile and a socket
// spliced; otherwise it is copied through Write.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	if !w.bodyAllowed() || w.cl < 0 || c.rf == nil {
		return io.Copy(writerOnly{w}, src)
	}
	if !w.sent {
		w.finishHead(false)
	}
	if err := c.write(nil); err != nil {
		return 0, err
	}
	left := w.cl - w.written
	// At most what is left of the declared length. The socket recognizes
	// one *io.LimitedReader around a file or socket, so keep it one level.
	lr, ok := src.(*io.LimitedReader)
	var n int64
	var err error
	if ok && lr.N <= left {
		n, err = c.rf.ReadFrom(lr)
	} else {
		inner := src
		if ok {
			inner = lr.R
			left = min(left, lr.N)
		}
		n, err = c.rf.ReadFrom(&io.LimitedReader{R: inner, N: left})
		if ok {
			lr.N -= n
		}
	}
	w.written += n
	if err != nil {
		c.werr = err
	}
	return n, err
}

// writerOnly hides ReadFrom, so io.Copy uses Write.
type writerOnly struct{ io.Writer }

// finish completes the response after the handler returned and reports
// whether the connection can carry another request.
func (w *response) finish() bool {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.finishHead(true)
	}
	c := w.c
	if w.chunked {
		c.out = append(c.out, "0\r\n\r\n"...)
	}
	if c.write(nil) != nil {
		return false
	}
	if w.bodyAllowed() && w.cl >= 0 && w.written < w.cl {
		return false // short: the client must see the connection end
	}
	return !w.closeAfter
}

func hasToken(v, token string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// httpDate is the current time in HTTP's format, formatted once a second.
func (l *Listener) httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := l.date.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &cachedDate{sec: sec, text: now.UTC().Format(http.TimeFormat)}
	l.date.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text string
}
