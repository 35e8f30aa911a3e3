// Package h1 answers simple HTTP/1.1 requests on the client port without
// net/http's server, and passes every other connection on to it.
//
// A Listener wraps a plain TCP listener (never a TLS one). It reads each
// connection it accepts itself for as long as the requests on it are
// simple: GET or HEAD, HTTP/1.1, no body, no Expect, Upgrade or
// Transfer-Encoding, a header block that fits its 8 KiB buffer and that
// parses without any leniency. It builds the http.Request with a small
// parser and calls the handler with a ResponseWriter of its own, which
// writes the status line, the headers and a small body with one system
// call, and hands a large body to the socket's ReadFrom (sendfile from a
// blob file, splice from a peer's socket).
//
// The first request that is not simple hands the connection, with every
// byte read from it so far, to the http.Server that Accepts from the
// Listener. net/http then owns that connection for the rest of its life,
// with all its semantics (bodies, 100-continue, 400 answers to malformed
// requests). Both paths run the same handler, so a client cannot tell them
// apart but by speed.
//
// Why: on warm hits of small files, net/http's per-request machinery cost
// more CPU than the cache's own work: textproto header parsing, a
// background read and a cancelable context per request, the clone and
// sort of the response headers, and two writes per response (see
// docs/PERFORMANCE.md, P2).
//
// On Linux the fast path reads requests and writes responses with raw
// system calls through the socket's RawConn (rawio_linux.go): the
// goroutine keeps its processor through a non-blocking read or write,
// instead of entering the scheduler's system-call state, which on a busy
// node woke the runtime's monitor every 20 µs and handed processors
// between threads. It still waits in the netpoller and honours deadlines.
// A connection's whole conversation runs inside one RawConn.Read, so after
// a read that emptied the socket it waits for the next request at once:
// one read per request instead of a second one that returns EAGAIN.
// The read deadline is armed once per request and moved only when it has
// aged by an eighth of its length, and a connection's idle or busy state
// is an atomic, not a map entry under the Listener's lock.
//
// What the fast path does not do, that net/http does: it does not notice
// a client that goes away while the handler is still waiting for data
// (it notices at the next write), it ignores 1xx responses, and it writes
// header fields in the header map's order rather than sorted (HTTP gives
// the order of different fields no meaning; a field's values keep theirs).
package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Listener. Zero durations mean no limit.
type Config struct {
	// ReadHeaderTimeout bounds the time from a request's first byte (a new
	// connection's arrival, for its first request) to the end of its
	// header block.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	IdleTimeout time.Duration
	// Logger gets handler panics (other than http.ErrAbortHandler).
	Logger *slog.Logger
}

// bufSize is the read buffer per connection; a request whose header block
// does not fit goes to net/http (which allows up to MaxHeaderBytes).
const bufSize = 8 << 10

// Listener is a net.Listener whose Accept returns only the connections
// that need net/http; it serves the others itself (see the package doc).
type Listener struct {
	inner   net.Listener
	handler http.Handler
	cfg     Config
	log     *slog.Logger

	handoff  chan net.Conn
	done     chan struct{} // closed by Close
	failed   chan struct{} // closed when the inner listener failed for good
	failErr  error
	closing  sync.Once
	noKeep   atomic.Bool // keep-alives disabled
	shutting atomic.Bool // Close was called
	date     atomic.Pointer[cachedDate]
	acceptWG sync.WaitGroup

	mu    sync.Mutex
	conns map[*conn]struct{} // every connection the Listener serves
}

// NewListener serves simple requests on connections accepted from inner
// with h, and returns the others from Accept. It starts accepting at once;
// Close stops it.
func NewListener(inner net.Listener, h http.Handler, cfg Config) *Listener {
	l := &Listener{
		inner: inner, handler: h, cfg: cfg, log: cfg.Logger,
		handoff: make(chan net.Conn),
		done:    make(chan struct{}),
		failed:  make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.acceptWG.Add(1)
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	defer l.acceptWG.Done()
	var delay time.Duration
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.failErr = err
				close(l.failed)
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed, retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		c := &conn{l: l, nc: nc, remote: nc.RemoteAddr().String(), raw: newRawIO(nc)}
		c.rf, _ = nc.(io.ReaderFrom)
		if c.raw != nil {
			c.br = bufio.NewReaderSize(c.raw, bufSize)
		} else {
			c.br = bufio.NewReaderSize(nc, bufSize)
		}
		if !l.add(c) {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// Accept returns the next connection handed over to net/http.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.handoff:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.failed:
		return nil, l.failErr
	}
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, closes the connections that wait for a request,
// and lets those serving one close after their response: the graceful
// half of a shutdown. Wait waits for them; CloseConns cuts them.
func (l *Listener) Close() error {
	l.closing.Do(func() {
		l.shutting.Store(true)
		close(l.done)
		l.inner.Close()
		l.mu.Lock()
		for c := range l.conns {
			if !c.active.Load() {
				c.nc.Close()
			}
		}
		l.mu.Unlock()
		l.acceptWG.Wait()
	})
	return nil
}

// CloseConns closes every connection the Listener serves, in the middle of
// a response or not.
func (l *Listener) CloseConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.nc.Close()
	}
}

// Wait blocks until no connection is served by the Listener any more (after
// Close), or ctx ends.
func (l *Listener) Wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// SetKeepAlivesEnabled, when false, closes each connection after its
// current response (what http.Server.SetKeepAlivesEnabled does for its
// own).
func (l *Listener) SetKeepAlivesEnabled(v bool) { l.noKeep.Store(!v) }

// add records a new connection. It reports false once Close has begun:
// the connection must then close. Close sets shutting before it takes the
// lock to close the idle connections, so one added after that is refused
// here, and one added before is in the map it walks.
func (l *Listener) add(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shutting.Load() {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

// track records c as serving a request or idle, twice per request, so
// without the lock. It reports false once Close has begun: the connection
// must then close. Close sets shutting before it reads each connection's
// state, and track sets the state before it reads shutting: with atomics,
// one of the two sees the other, so an idle connection is closed by Close
// or by itself, and a busy one by itself after its response.
func (l *Listener) track(c *conn, active bool) bool {
	c.active.Store(active)
	return !l.shutting.Load()
}

func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// handOver gives c to net/http, with the bytes already buffered.
func (l *Listener) handOver(c *conn) {
	l.forget(c)
	c.nc.SetDeadline(time.Time{})
	pc := &prefixConn{Conn: c.nc, br: c.br, rf: c.rf}
	select {
	case l.handoff <- pc:
	case <-l.done:
		c.nc.Close()
	case <-l.failed:
		c.nc.Close()
	}
}

// prefixConn is a connection handed to net/http: reads return what the
// fast path had buffered first. ReadFrom and CloseWrite reach the socket,
// so net/http still uses sendfile and splice.
type prefixConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
	rf io.ReaderFrom
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if p.br != nil {
		if p.br.Buffered() > 0 {
			return p.br.Read(b)
		}
		p.br = nil
	}
	return p.Conn.Read(b)
}

func (p *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if p.rf != nil {
		return p.rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{p.Conn}, r)
}

func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
