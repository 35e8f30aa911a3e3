package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawLoadFor is a lean HTTP/1.1 keep-alive load generator for small
// responses (P2), built the way wrk is: one epoll loop per thread
// (min(cores, conns) threads, each locked to its OS thread and owning an
// equal share of the connections), over non-blocking sockets that the Go
// runtime's poller never sees. Each connection sends "GET path" back to
// back (one request in flight, no pipelining) and the loop parses each
// response head by hand, with no allocation per request.
//
// It used to be a goroutine per connection on Go's poller. That
// generator's own runtime took part in what it measured: with a Go
// server on the other side, two runtimes parked and woke each other's
// threads on two cores and the machine sat idle 8% of the time, so even
// hfcache's HTTP layer replaying a canned response (P2's reference) could
// not reach 1.2× nginx under it, while nginx ran faster under it than
// under wrk. This one agrees with wrk on every server (docs/PERFORMANCE.md,
// session 12).
//
// Every response must be "200" with a Content-Length of exactly bodySize
// and no Transfer-Encoding or "Connection: close"; anything else, or a short
// body, or the server closing the connection, fails the run with the status
// line in the error. The latency of a request is the time from its write to
// its last body byte. All connections are dialed first, then released
// together; each stops at the first request that ends after d (or at once
// when another connection failed), and a connection with no answer 30 s
// after d fails the run.
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
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return res, 0, fmt.Errorf("rawLoadFor %s: %w", rawURL, err)
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: hfcache-bench\r\n\r\n")

	perConn := int(100_000*d.Seconds())/max(conns, 1) + 1024
	cs := make([]*econn, conns)
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range cs {
		fd, err := dialRaw(ta, 10*time.Second) // as net.DialTimeout did
		if err != nil {
			return res, 0, fmt.Errorf("rawLoadFor %s: %w", rawURL, err)
		}
		cs[i] = &econn{id: i, fd: fd, buf: make([]byte, 64<<10), lat: make([]time.Duration, 0, perConn)}
	}

	loops := make([]*eloop, min(runtime.NumCPU(), conns))
	defer func() {
		for _, l := range loops {
			if l != nil {
				syscall.Close(l.epfd)
			}
		}
	}()
	for i := range loops {
		if loops[i], err = newEloop(req, bodySize); err != nil {
			return res, 0, fmt.Errorf("rawLoadFor %s: %w", rawURL, err)
		}
	}
	for i, c := range cs {
		if err := loops[i%len(loops)].add(c); err != nil {
			return res, 0, fmt.Errorf("rawLoadFor %s: %w", rawURL, err)
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	ru0 := rusageCPU()
	start := time.Now()
	deadline := start.Add(d)
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if l.err = l.run(deadline, &stop); l.err != nil {
				stop.Store(true)
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	cpu = rusageCPU() - ru0

	// A connection's failure names the connection; a loop's own (epoll)
	// failure has none to name.
	var errs []error
	total := 0
	for _, c := range cs {
		if c.err != nil {
			errs = append(errs, fmt.Errorf("GET %s (connection %d, after %d responses): %w", rawURL, c.id, c.n, c.err))
		}
		total += len(c.lat)
	}
	if len(errs) == 0 {
		for _, l := range loops {
			if l.err != nil {
				errs = append(errs, l.err)
			}
		}
	}
	if len(errs) > 0 {
		// The first few: 64 copies of the same error say nothing more.
		return res, cpu, fmt.Errorf("rawLoadFor: %w", errors.Join(errs[:min(len(errs), 3)]...))
	}
	res.lat = make([]time.Duration, 0, total)
	for _, c := range cs {
		res.requests += c.n
		res.bytes += c.n * bodySize
		res.lat = append(res.lat, c.lat...)
	}
	slices.Sort(res.lat)
	return res, cpu, nil
}

// dialRaw connects a non-blocking socket to a, waiting at most timeout for
// the connection to be made. Not net.Dialer: its socket, and any dup of
// it (TCPConn.File), is registered with the Go runtime's poller, whose
// wake-ups are what these loops avoid.
func dialRaw(a *net.TCPAddr, timeout time.Duration) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := a.IP.To4(); ip4 != nil {
		s := &syscall.SockaddrInet4{Port: a.Port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		family = syscall.AF_INET6
		s := &syscall.SockaddrInet6{Port: a.Port}
		copy(s.Addr[:], a.IP.To16())
		sa = s
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	err = syscall.Connect(fd, sa)
	if err == syscall.EINPROGRESS {
		err = awaitConnect(fd, timeout)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", a, err)
	}
	// As net.Dial does: a request leaves at once.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	return fd, nil
}

// awaitConnect waits for a non-blocking connect on fd to end and returns
// its outcome. A blocking connect would not do: with a timeout
// (SO_SNDTIMEO) it is not restarted after a signal, and the Go runtime
// signals its threads to preempt them, so it failed with EINTR.
func awaitConnect(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no answer in %v", timeout)
		}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			break
		}
	}
	soErr, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return fmt.Errorf("SO_ERROR: %w", err)
	}
	if soErr != 0 {
		return syscall.Errno(soErr)
	}
	return nil
}

// econn is one connection of an epoll loop.
type econn struct {
	id, fd    int
	slot      int32 // index in its loop's conns, the epoll event's tag
	buf       []byte
	filled    int       // bytes of the head in buf
	head      int       // the head's length once parsed, else 0
	left      int64     // body bytes still to come once the head is parsed
	status    []byte    // the last head's status line, in statusBuf; nil: none
	statusBuf [128]byte // the body's reads reuse buf, so errors quote this
	t0        time.Time
	done      bool

	n   int64
	lat []time.Duration
	err error
}

func (c *econn) close() {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
}

// eloop is one thread's epoll loop over its share of the connections.
type eloop struct {
	epfd     int
	conns    []*econn
	req      []byte
	bodySize int64
	err      error // why run stopped early, if it did
}

func newEloop(req []byte, bodySize int64) (*eloop, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &eloop{epfd: fd, req: req, bodySize: bodySize}, nil
}

func (l *eloop) add(c *econn) error {
	c.slot = int32(len(l.conns))
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: c.slot}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l.conns = append(l.conns, c)
	return nil
}

// run sends every connection's first request, then serves events until
// each connection finished a response after deadline, or one failed (or
// another loop's did: stop).
func (l *eloop) run(deadline time.Time, stop *atomic.Bool) error {
	fail := func(c *econn, err error) error {
		c.err = err
		return err
	}
	for _, c := range l.conns {
		if err := l.send(c); err != nil {
			return fail(c, err)
		}
	}
	events := make([]syscall.EpollEvent, len(l.conns))
	open := len(l.conns)
	hung := deadline.Add(30 * time.Second)
	for open > 0 && !stop.Load() {
		n, err := epollWait(l.epfd, events, 100)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if n == 0 && time.Now().After(hung) {
			for _, c := range l.conns {
				if !c.done {
					return fail(c, errors.New("no response 30 s after the run's end"))
				}
			}
		}
		for _, ev := range events[:n] {
			c := l.conns[ev.Fd]
			complete, err := l.read(c)
			if err != nil {
				return fail(c, err)
			}
			if !complete {
				continue
			}
			t1 := time.Now()
			c.n++
			c.lat = append(c.lat, t1.Sub(c.t0))
			if !t1.Before(deadline) {
				c.done = true
				open--
				if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil); err != nil {
					return fail(c, fmt.Errorf("epoll_ctl: %w", err))
				}
				continue
			}
			if err := l.send(c); err != nil {
				return fail(c, err)
			}
		}
	}
	return nil
}

// send writes c's request. With one request in flight and the previous
// response read, the socket's send buffer is empty, so a request of a few
// dozen bytes always goes in one write; anything less fails the run rather
// than waiting for writability on a path no run takes.
func (l *eloop) send(c *econn) error {
	c.t0 = time.Now()
	for {
		n, err := rawRW(syscall.SYS_WRITE, c.fd, l.req)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if n != len(l.req) {
			return fmt.Errorf("write: the socket took %d of the request's %d bytes", n, len(l.req))
		}
		return nil
	}
}

// read takes what the socket has for c and reports whether c's response is
// complete.
func (l *eloop) read(c *econn) (bool, error) {
	if c.head == 0 {
		n, err := readFD(c.fd, c.buf[c.filled:])
		if err == syscall.EAGAIN {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			if c.filled == 0 {
				return false, errors.New("the server closed the connection")
			}
			c.noteStatus(c.buf[:c.filled])
			return false, fmt.Errorf("the server closed the connection in the head (%s)", c.statusLine())
		}
		from := max(0, c.filled-3)
		c.filled += n
		end := bytes.Index(c.buf[from:c.filled], []byte("\r\n\r\n"))
		if end < 0 {
			if c.filled == len(c.buf) {
				c.noteStatus(c.buf[:c.filled])
				return false, fmt.Errorf("a head longer than %d bytes (%s)", len(c.buf), c.statusLine())
			}
			return false, nil
		}
		c.head = from + end + 4
		if err := c.checkHead(c.buf[:c.head], l.bodySize); err != nil {
			return false, err
		}
		c.left = l.bodySize - int64(c.filled-c.head)
	} else {
		n, err := readFD(c.fd, c.buf[:min(int64(len(c.buf)), c.left)])
		if err == syscall.EAGAIN {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, fmt.Errorf("short body: %d of %d bytes (%s): the server closed the connection", l.bodySize-c.left, l.bodySize, c.statusLine())
		}
		c.left -= int64(n)
	}
	if c.left < 0 { // only from the read that held the head: a body read asks for at most left
		return false, fmt.Errorf("%d bytes after the %d-byte body (%s)", -c.left, l.bodySize, c.statusLine())
	}
	if c.left > 0 {
		return false, nil
	}
	c.filled, c.head = 0, 0
	return true, nil
}

func readFD(fd int, p []byte) (int, error) {
	for {
		n, err := rawRW(syscall.SYS_READ, fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil && err != syscall.EAGAIN {
			return 0, fmt.Errorf("read: %w", err)
		}
		return n, err
	}
}

// noteStatus keeps the status line at the start of b, if b has a whole
// one, for the errors that quote it, and returns what follows that line.
func (c *econn) noteStatus(b []byte) (rest []byte) {
	c.status = nil
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if ok {
		line = trimEOL(line)
		c.status = append(c.statusBuf[:0], line[:min(len(line), len(c.statusBuf))]...)
	}
	return rest
}

// statusLine describes the noted status line.
func (c *econn) statusLine() string {
	if c.status == nil {
		return "no status line"
	}
	return fmt.Sprintf("status line %q", c.status)
}

// checkHead notes a response head's status line and checks the head
// (status line, headers, blank line): a 200 with a Content-Length of
// exactly bodySize, no Transfer-Encoding, no Connection: close.
func (c *econn) checkHead(head []byte, bodySize int64) error {
	rest := c.noteStatus(head)
	line := c.status
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || string(line[9:12]) != "200" || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%s, want 200", c.statusLine())
	}
	cl := int64(-1)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = trimEOL(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("malformed header line %q (%s)", line, c.statusLine())
		}
		name, val := line[:colon], trimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			v, ok := parseDecimal(val)
			if !ok || (cl >= 0 && v != cl) {
				return fmt.Errorf("bad Content-Length %q (%s)", val, c.statusLine())
			}
			cl = v
		case asciiEqualFold(name, "transfer-encoding"):
			return fmt.Errorf("Transfer-Encoding: %s (%s), want a plain Content-Length body", val, c.statusLine())
		case asciiEqualFold(name, "connection"):
			if containsFold(val, "close") {
				return fmt.Errorf("Connection: %s (%s): the server will not keep the connection alive", val, c.statusLine())
			}
		}
	}
	if cl != bodySize {
		if cl < 0 {
			return fmt.Errorf("no Content-Length (%s), want %d", c.statusLine(), bodySize)
		}
		return fmt.Errorf("Content-Length %d (%s), want %d", cl, c.statusLine(), bodySize)
	}
	return nil
}

// The loops make their system calls raw: each loop's goroutine is locked
// to its thread and keeps its P while it waits in epoll_pwait, so the Go
// scheduler never hands the P off and wakes a thread to take it back (at
// ~80k requests/s that dance cost the generator a tenth of its CPU). Read
// and write never block on these non-blocking sockets. A signal (the
// runtime's preemption included) ends a wait with EINTR, and the loop
// waits again.

func epollWait(epfd int, events []syscall.EpollEvent, msec int) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawRW(trap uintptr, fd int, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
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
