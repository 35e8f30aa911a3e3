package node

import (
	"net"
	"syscall"
	"time"
)

// Peer connections must notice a peer that vanished (killed, or cut off by
// a partition) in seconds, not when the 5-minute response-header timeout
// ends. Two kernel mechanisms do it without touching the request path:
// keep-alive probes on idle and waiting connections (a live owner that is
// waiting on the Hub still ACKs them), and TCP_USER_TIMEOUT, which drops a
// connection whose sent data (a request, a probe) stays unacknowledged.
const (
	peerDialTimeout = 3 * time.Second
	peerUserTimeout = 10 * time.Second
	tcpUserTimeout  = 0x12 // TCP_USER_TIMEOUT from linux/tcp.h (not in package syscall)
)

// peerDialer dials other nodes.
func peerDialer() *net.Dialer {
	return &net.Dialer{
		Timeout: peerDialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3,
		},
		Control: func(_, _ string, c syscall.RawConn) error {
			c.Control(func(fd uintptr) {
				// Best effort: a kernel without it keeps the keep-alives.
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(peerUserTimeout/time.Millisecond))
			})
			return nil
		},
	}
}
