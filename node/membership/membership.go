package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Errors.
var (
	ErrStarted = errors.New("membership: already started")
	ErrStopped = errors.New("membership: shut down")
)

const (
	// updateTimeout bounds how long UpdateMeta waits for its broadcast to
	// go out; the new metadata also reaches everyone by push/pull.
	updateTimeout = 5 * time.Second
	// defaultLeaveTimeout is Leave's budget when given none.
	defaultLeaveTimeout = 5 * time.Second
	// resolveTimeout bounds resolving an AdvertiseAddr host name.
	resolveTimeout = 10 * time.Second
)

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopped
)

// Membership is this node's membership in the cluster's gossip.
type Membership struct {
	cfg    Config
	logger *slog.Logger
	view   *view
	local  *localMeta

	gossipAddr atomic.Pointer[string]

	// opMu serialises Start, UpdateMeta, Leave and Shutdown.
	opMu       sync.Mutex
	phase      phase
	list       *memberlist.Memberlist
	cancelJoin context.CancelFunc // stops the join loop
	cancelDial context.CancelFunc // cuts the transport's outgoing connections
	joinDone   chan struct{}      // closed when the join loop has returned
	sends      sync.WaitGroup     // leave notices in flight
}

// New checks cfg and prepares a Membership; it does no I/O.
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Membership{
		cfg:    cfg,
		logger: cfg.Logger,
		view:   newView(cfg.Name, cfg.Logger),
		local:  &localMeta{life: newLife()},
	}
	m.local.onLeave = m.view.leaveNotice
	if err := m.local.set(cfg.Meta); err != nil {
		return nil, fmt.Errorf("%w: Meta: %v", ErrInvalidConfig, err)
	}
	return m, nil
}

// Start binds the gossip port (TCP and UDP) and, if there are seeds, starts
// joining them in the background, retrying with backoff until another
// member is known; the node is a cluster of one meanwhile. The same
// goroutine then retries members seen dead every JoinRetryMax, so a
// partition heals and a restarted member is found again.
func (m *Membership) Start() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	switch m.phase {
	case phaseRunning:
		return ErrStarted
	case phaseStopped:
		return ErrStopped
	}

	bindIP, bindPort, _ := parseBind(m.cfg.BindAddr) // validated
	bridge := &logBridge{logger: m.logger, onSuspect: m.view.suspect}
	stdlog := newStdLogger(bridge)
	dialCtx, cancelDial := context.WithCancel(context.Background())
	tr, err := newTransport(dialCtx, bindIP, bindPort, stdlog)
	if err != nil {
		cancelDial()
		return fmt.Errorf("membership: bind gossip %s: %w", m.cfg.BindAddr, err)
	}
	boundPort := tr.GetAutoBindPort()
	advIP, advPort, err := m.advertise(bindIP, boundPort)
	if err != nil {
		_ = tr.Shutdown()
		cancelDial()
		return err
	}

	conf := memberlist.DefaultLANConfig()
	if m.cfg.Tune != nil {
		m.cfg.Tune(conf)
	}
	conf.Name = m.cfg.Name
	conf.BindAddr = bindIP.String()
	conf.BindPort = boundPort
	conf.AdvertiseAddr = advIP
	conf.AdvertisePort = advPort
	conf.Transport = tr
	conf.Logger = stdlog
	conf.LogOutput = nil
	m.view.setSuspicionBound(conf.ProbeInterval, conf.SuspicionMult, conf.SuspicionMaxTimeoutMult)
	conf.Delegate = m.local
	conf.Events = m.view
	conf.Ping = m.view
	conf.SecretKey = nil
	conf.Keyring = nil
	if m.cfg.Secret != "" {
		kr, err := memberlist.NewKeyring(nil, gossipKey(m.cfg.Secret))
		if err != nil { // cannot happen: the key is 32 bytes
			_ = tr.Shutdown()
			cancelDial()
			return fmt.Errorf("membership: keyring: %w", err)
		}
		conf.Keyring = kr
		conf.GossipVerifyIncoming = true
		conf.GossipVerifyOutgoing = true
	}

	list, err := memberlist.Create(conf)
	if err != nil {
		_ = tr.Shutdown()
		cancelDial()
		return fmt.Errorf("membership: start gossip: %w", err)
	}
	addr := list.LocalNode().Address()
	m.gossipAddr.Store(&addr)
	m.list = list
	m.cancelDial = cancelDial
	m.phase = phaseRunning

	joinCtx, cancelJoin := context.WithCancel(context.Background())
	m.cancelJoin = cancelJoin
	m.joinDone = make(chan struct{})
	m.logger.Info("gossip started", "node", m.cfg.Name, "bind", net.JoinHostPort(bindIP.String(), strconv.Itoa(boundPort)),
		"advertise", addr, "encrypted", m.cfg.Secret != "", "seeds", m.cfg.Join)
	go m.joinLoop(joinCtx, list)
	return nil
}

// advertise picks the address the other nodes reach this node at.
func (m *Membership) advertise(bindIP net.IP, boundPort int) (string, int, error) {
	var host string
	port := boundPort
	if m.cfg.AdvertiseAddr != "" {
		h, p, _ := parseHostMaybePort(m.cfg.AdvertiseAddr) // validated
		host = h
		if p != 0 {
			port = p
		}
	}
	switch {
	case host != "":
		if ip := net.ParseIP(host); ip != nil {
			return ip.String(), port, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		defer cancel()
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("membership: resolve AdvertiseAddr %q: %v", host, err)
		}
		ip := ips[0]
		for _, c := range ips {
			if c.To4() != nil {
				ip = c
				break
			}
		}
		return ip.String(), port, nil
	case !bindIP.IsUnspecified():
		return bindIP.String(), port, nil
	}
	if ip := firstNonLoopbackIPv4(); ip != nil {
		return ip.String(), port, nil
	}
	m.logger.Warn("no non-loopback IPv4 address: advertising 127.0.0.1, other machines cannot reach this node; set AdvertiseAddr")
	return "127.0.0.1", port, nil
}

// firstNonLoopbackIPv4 is the first IPv4 address of an up, non-loopback
// interface that is not link-local.
func firstNonLoopbackIPv4() net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip := ipn.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip
			}
		}
	}
	return nil
}

// Members is this node's view of the cluster, sorted by name: the alive and
// suspect members, and those seen dead or left in the last day (until they
// come back). Empty before Start.
func (m *Membership) Members() []Member {
	return m.view.snapshot()
}

// Changes receives a signal whenever a member joins, leaves, fails, comes
// back, becomes suspect or alive again, or changes its metadata. Signals
// coalesce (the channel holds one): read Members after each.
func (m *Membership) Changes() <-chan struct{} {
	return m.view.changes
}

// LocalName is this node's name.
func (m *Membership) LocalName() string {
	return m.cfg.Name
}

// GossipAddr is the "host:port" the other nodes reach this node's gossip
// at (the advertised host and the port actually bound, which matters with
// port 0); "" before Start.
func (m *Membership) GossipAddr() string {
	if p := m.gossipAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// UpdateMeta replaces this node's metadata and gossips it, waiting a little
// for the broadcast to go out. Before Start it only sets what Start will
// advertise.
func (m *Membership) UpdateMeta(meta Meta) error {
	if errs := meta.validate(); len(errs) > 0 {
		return fmt.Errorf("membership: UpdateMeta: %w", errors.Join(errs...))
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.phase == phaseStopped {
		return ErrStopped
	}
	if err := m.local.set(meta); err != nil {
		return fmt.Errorf("membership: UpdateMeta: %w", err)
	}
	if m.phase == phaseNew {
		return nil
	}
	if err := m.list.UpdateNode(updateTimeout); err != nil {
		m.logger.Debug("metadata update not yet gossiped everywhere; push/pull will carry it", "err", err)
	}
	return nil
}

// Leave tells the cluster this node is leaving, so the others see it as
// left rather than dead, then shuts down. timeout (default 5s if <= 0)
// bounds the wait for the announcements to go out; the node shuts down
// either way. A member that missed them sees this node dead. Leave after
// Shutdown does nothing.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultLeaveTimeout
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	switch m.phase {
	case phaseNew:
		m.phase = phaseStopped
		return nil
	case phaseStopped:
		return nil
	}
	deadline := time.Now().Add(timeout)

	// Let a join attempt in flight finish (within a third of the budget):
	// the members it finds must hear the leave too.
	m.cancelJoin()
	select {
	case <-m.joinDone:
	case <-time.After(timeout / 3):
	}

	// Tell every member first, directly: memberlist's leave message reaches
	// their event delegates as a death (see leave.go).
	told, notTold := m.announceLeave(max(time.Until(deadline)/2, time.Millisecond))

	var leaveErr error
	if err := m.list.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		leaveErr = fmt.Errorf("membership: leave: %w", err)
		m.logger.Warn("leave broadcast not confirmed; shutting down anyway",
			"members_told", told, "members_not_told", notTold, "err", err)
	} else {
		m.logger.Info("left the cluster", "node", m.cfg.Name, "members_told", told, "members_not_told", notTold)
	}
	return errors.Join(leaveErr, m.stopLocked())
}

// Shutdown stops gossip without a goodbye (the others will see this node
// fail) and stops the join loop, waiting for it. It is idempotent.
func (m *Membership) Shutdown() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	switch m.phase {
	case phaseNew:
		m.phase = phaseStopped
		return nil
	case phaseStopped:
		return nil
	}
	return m.stopLocked()
}

// stopLocked tears down a running Membership; opMu is held.
func (m *Membership) stopLocked() error {
	m.phase = phaseStopped
	m.cancelJoin()
	err := m.list.Shutdown()
	m.cancelDial() // an in-flight join or leave notice gives up now
	<-m.joinDone
	m.sends.Wait()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}
