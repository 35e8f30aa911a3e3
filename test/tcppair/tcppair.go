// Package tcppair gives tests a connected pair of TCP sockets on loopback,
// for code that needs a real kernel socket (splice, sendfile, socket
// options, partial writes) rather than net.Pipe.
package tcppair

import (
	"net"
	"testing"
)

// New returns the dialing side and the accepted side of one connection on
// 127.0.0.1. Both are closed when the test ends.
func New(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
