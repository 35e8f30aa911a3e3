package node

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestPeerDialerDetectsDeadPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := peerDialer().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, idle, keepalive int
	raw.Control(func(fd uintptr) {
		userTimeout, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
		idle, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		keepalive, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	})
	if time.Duration(userTimeout)*time.Millisecond != peerUserTimeout || idle != 5 || keepalive != 1 {
		t.Fatalf("TCP_USER_TIMEOUT %d ms, TCP_KEEPIDLE %d s, SO_KEEPALIVE %d", userTimeout, idle, keepalive)
	}
}
