package membership

import (
	"context"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's own NetTransport whose outgoing TCP connections
// (joins, push/pull, fallback pings) are cut when ctx ends, so Shutdown does
// not wait out a TCPTimeout on a seed that swallows packets.
type transport struct {
	*memberlist.NetTransport
	ctx      context.Context
	shutdown sync.Once
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport binds TCP and UDP on ip:port. With port 0 the kernel picks
// the TCP port and UDP may find it taken: retry a few times, as memberlist
// does when it builds its transport itself.
func newTransport(ctx context.Context, ip net.IP, port int, logger *log.Logger) (*transport, error) {
	attempts := 1
	if port == 0 {
		attempts = 10
	}
	var err error
	for range attempts {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{ip.String()},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil {
			return &transport{NetTransport: nt, ctx: ctx}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.dial(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dial(a.Addr, timeout)
}

func (t *transport) dial(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(t.ctx, func() { _ = conn.Close() })
	return &cutConn{Conn: conn, stop: stop}, nil
}

// Shutdown implements memberlist.Transport; it is safe to call twice.
func (t *transport) Shutdown() error {
	var err error
	t.shutdown.Do(func() { err = t.NetTransport.Shutdown() })
	return err
}

// cutConn is a connection closed early if its transport shuts down.
type cutConn struct {
	net.Conn
	stop func() bool
}

func (c *cutConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
