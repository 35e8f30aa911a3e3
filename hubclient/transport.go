package hubclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// newTransport builds the client's own transport (never DefaultTransport).
//
// Compression is disabled: every request says Accept-Encoding: identity, and
// Go must never gunzip behind our back (sizes would be wrong, §11.8).
// HTTP/1.1 only: each large download gets its own TCP connection and window,
// instead of sharing one HTTP/2 connection's flow control.
func newTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		Protocols:             &protocols,
	}
}

// hopByHop are the headers that concern one connection, never forwarded
// (RFC 9110 §7.6.1, plus the legacy Proxy-Connection).
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// stripHopByHop removes hop-by-hop headers from h, including those the
// Connection header names.
func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// errStalled is the cancellation cause of a request whose body stalled.
var errStalled = errors.New("body stalled")

// stallBody enforces StallTimeout on a response body: a watchdog timer is
// armed while a Read waits for data and, if it fires, cancels the request's
// context, which makes the transport abort the connection and the Read
// return. Time the caller spends between Reads does not count (a slow
// consumer is not a stalled upstream). The timer is a runtime timer: no
// goroutine runs unless it fires, and Close stops it.
type stallBody struct {
	rc      io.ReadCloser
	d       time.Duration
	parent  context.Context // the caller's context, to tell its cancellation apart
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	stalled atomic.Bool
	once    sync.Once
}

// newStallBody wraps rc, whose request runs under a context that cancel
// cancels and that derives from parent.
func newStallBody(parent context.Context, rc io.ReadCloser, d time.Duration, cancel context.CancelCauseFunc) *stallBody {
	s := &stallBody{rc: rc, d: d, parent: parent, cancel: cancel}
	s.timer = time.AfterFunc(d, s.fire)
	s.timer.Stop()
	return s
}

func (s *stallBody) fire() {
	s.stalled.Store(true)
	s.cancel(errStalled)
}

// Read reads from the upstream body. A stall returns an error wrapping
// ErrUnreachable and os.ErrDeadlineExceeded; other failures (reset, early
// EOF) wrap ErrUnreachable; a cancelled caller context comes back as is.
func (s *stallBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return s.rc.Read(p)
	}
	s.timer.Reset(s.d)
	n, err := s.rc.Read(p)
	s.timer.Stop()
	if err == nil || err == io.EOF {
		return n, err
	}
	switch {
	case s.stalled.Load():
		err = fmt.Errorf("%w: no data for %v: %w", ErrUnreachable, s.d, os.ErrDeadlineExceeded)
	case s.parent.Err() != nil:
		err = s.parent.Err()
	default:
		err = fmt.Errorf("%w: reading body: %w", ErrUnreachable, err)
	}
	return n, err
}

// Close closes the body, stops the watchdog and releases the request context.
func (s *stallBody) Close() error {
	var err error
	s.once.Do(func() {
		s.timer.Stop()
		err = s.rc.Close()
		s.cancel(context.Canceled)
	})
	return err
}
