//go:build !linux

package h1

import "net"

// rawIO is Linux's (rawio_linux.go); elsewhere connections use net.Conn.
type rawIO struct{}

func newRawIO(net.Conn) *rawIO { return nil }

func (*rawIO) run(func() error) error { panic("h1: rawIO without a platform") }

func (*rawIO) emptied() bool { return false }

func (*rawIO) Read([]byte) (int, error) { panic("h1: rawIO without a platform") }

func (*rawIO) write(a, b []byte) error { panic("h1: rawIO without a platform") }
