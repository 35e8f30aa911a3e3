package raftstore

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// refusedLogEvery bounds the "connection refused" log to one line per
	// remote IP per interval: a scanner or a misconfigured node retrying
	// in a loop must not flood the log.
	refusedLogEvery = time.Minute
	// refusedLogKeep bounds the rate limiter's memory: past it, entries
	// older than refusedLogEvery are dropped.
	refusedLogKeep = 1024
)

var _ raft.StreamLayer = (*streamLayer)(nil)

// streamLayer is raft's StreamLayer over TCP (what raft.TCPStreamLayer
// does) with an admission check: Accept closes, unread, every connection
// whose remote address allow refuses, and hands raft only the others. A
// nil allow admits everyone. Dial is plain TCP.
type streamLayer struct {
	ln        net.Listener
	advertise *net.TCPAddr // nil: the listener's address
	allow     func(remote net.Addr) bool
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex
	refused map[string]time.Time // remote IP → when its refusal was last logged
}

func newStreamLayer(ln net.Listener, advertise *net.TCPAddr, allow func(net.Addr) bool, log *slog.Logger) *streamLayer {
	return &streamLayer{ln: ln, advertise: advertise, allow: allow, log: log, now: time.Now, refused: map[string]time.Time{}}
}

// Accept returns the next connection allow admits. Refused connections are
// closed at once (the peer reads EOF) and logged, rate-limited per IP.
// Errors are the listener's (net.ErrClosed after Close).
func (l *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		if l.allow == nil || l.allow(c.RemoteAddr()) {
			return c, nil
		}
		_ = c.Close()
		l.logRefused(c.RemoteAddr())
	}
}

func (l *streamLayer) logRefused(remote net.Addr) {
	ip := remote.String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	now := l.now()
	l.mu.Lock()
	logIt := l.mayLogLocked(ip, now)
	l.mu.Unlock()
	if logIt {
		l.log.Warn("raft connection refused: not a cluster member (logged once a minute per address)", "remote", remote.String())
	}
}

// mayLogLocked reports whether a refusal from ip may be logged now, and
// records it. When refusedLogKeep addresses were all logged within the last
// interval (a flood from many addresses), new addresses are not logged.
func (l *streamLayer) mayLogLocked(ip string, now time.Time) bool {
	if last, ok := l.refused[ip]; ok && now.Sub(last) < refusedLogEvery {
		return false
	}
	if len(l.refused) >= refusedLogKeep {
		for k, t := range l.refused {
			if now.Sub(t) >= refusedLogEvery {
				delete(l.refused, k)
			}
		}
		if _, ok := l.refused[ip]; !ok && len(l.refused) >= refusedLogKeep {
			return false
		}
	}
	l.refused[ip] = now
	return true
}

// Close closes the listener; a blocked Accept returns.
func (l *streamLayer) Close() error { return l.ln.Close() }

// Addr is the advertised address, else the listener's.
func (l *streamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// Dial implements raft.StreamLayer.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// checkAdvertisable is raft's own check on a TCP transport's address:
// other nodes must be able to dial it.
func (l *streamLayer) checkAdvertisable() error {
	a, ok := l.Addr().(*net.TCPAddr)
	switch {
	case !ok:
		return errors.New("local address is not a TCP address")
	case a.IP == nil || a.IP.IsUnspecified():
		return errors.New("local bind address is not advertisable")
	}
	return nil
}
