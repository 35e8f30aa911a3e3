package h1

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIO reads and writes a connection's socket with system calls that do
// not leave the Go scheduler: syscall.RawSyscall, inside RawConn's Read
// and Write, which still wait in the netpoller on EAGAIN and still honour
// the connection's deadlines.
//
// Why: a plain conn.Read or Write enters the scheduler's system-call state
// (entersyscall/exitsyscall). On a busy node the runtime's monitor thread
// then wakes every 20 µs to look for processors stuck in system calls,
// and hands the processor of a write that runs a little long (a loopback
// write also runs the receiver's TCP processing) to another thread: a
// futex wake, a context switch, and another one when the write returns
// and wants its processor back. A non-blocking socket read or write never
// blocks, so none of that buys anything here (see docs/PERFORMANCE.md, P2).
//
// Reads happen inside run, which sets fd. A read that returns less than
// asked for has emptied the socket; drained records it, so the connection
// waits for the next request in the netpoller at once instead of reading
// again for an EAGAIN (the Go netpoller is edge-triggered, and bytes that
// arrive after the read wake the wait).
type rawIO struct {
	rc syscall.RawConn

	fd      uintptr // the socket, inside the RawConn.Read callback
	drained bool    // the last read emptied the socket

	// The arguments and results of the write in progress: fields, so that
	// its callback is made once per connection.
	iov     [2]syscall.Iovec
	iovN    int
	errno   syscall.Errno
	writeFn func(fd uintptr) bool
}

func newRawIO(nc net.Conn) *rawIO {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc}
	r.writeFn = r.writev
	return r
}

// run calls step inside RawConn.Read, and again each time the socket
// becomes readable after step returned errWouldBlock. It returns step's
// other error, or the wait's (a deadline, the connection closed).
func (r *rawIO) run(step func() error) error {
	var err error
	werr := r.rc.Read(func(fd uintptr) bool {
		r.fd, r.drained = fd, false // at the start or after a wake-up: read
		err = step()
		return err != errWouldBlock
	})
	if err == nil || err == errWouldBlock {
		return werr
	}
	return err
}

// emptied reports whether the last read left the socket empty.
func (r *rawIO) emptied() bool { return r.drained }

// Read is io.Reader on the socket, for use inside run's step only: it
// reads once, and returns errWouldBlock when no bytes are there.
func (r *rawIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, r.fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			r.drained = int(n) < len(b)
			if n == 0 {
				return 0, io.EOF
			}
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.drained = true
			return 0, errWouldBlock
		}
		return 0, os.NewSyscallError("read", e)
	}
}

func (r *rawIO) writev(fd uintptr) bool {
	for r.iovN > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&r.iov[2-r.iovN])), uintptr(r.iovN))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
		// Drop what was written: whole buffers, then part of one.
		for left := uint64(n); left > 0 && r.iovN > 0; {
			v := &r.iov[2-r.iovN]
			if left < v.Len {
				v.Base = (*byte)(unsafe.Add(unsafe.Pointer(v.Base), left))
				v.Len -= left
				break
			}
			left -= v.Len
			*v = syscall.Iovec{}
			r.iovN--
		}
	}
	return true
}

// write sends a, then b (either may be empty), all of them or an error.
func (r *rawIO) write(a, b []byte) error {
	r.iov, r.iovN, r.errno = [2]syscall.Iovec{}, 0, 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			r.iov[r.iovN] = syscall.Iovec{Base: &p[0], Len: uint64(len(p))}
			r.iovN++
		}
	}
	switch r.iovN {
	case 0:
		return nil
	case 1: // the buffers in use sit last: writev starts at 2-iovN
		r.iov[1], r.iov[0] = r.iov[0], syscall.Iovec{}
	}
	err := r.rc.Write(r.writeFn)
	r.iov = [2]syscall.Iovec{}
	if err == nil && r.errno != 0 {
		err = os.NewSyscallError("writev", r.errno)
	}
	return err
}
