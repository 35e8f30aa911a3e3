package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

const (
	// DefaultBindAddr is the Raft transport's default listen address.
	DefaultBindAddr = ":7947"

	retainSnapshots    = 2
	logCacheEntries    = 512
	transportPool      = 3
	transportTimeout   = 10 * time.Second
	transferBound      = 5 * time.Second  // Shutdown's best-effort leadership transfer
	bootstrapSeedBound = 30 * time.Second // BootstrapSelf's wait for leadership and the seed
	boltLockWait       = 2 * time.Second
	leaderPoll         = 10 * time.Millisecond
	membersPoll        = 100 * time.Millisecond
)

// Config configures a Store.
type Config struct {
	// Dir holds raft.db (raft-boltdb/v2: log and stable store) and the file
	// snapshots (two retained). It is created 0700: the log and snapshots
	// hold remote tokens.
	Dir string
	// NodeID is the Raft server ID: the node name.
	NodeID string
	// BindAddr is the TCP "host:port" the transport listens on (port 0
	// picks a free port, for tests).
	BindAddr string
	// AdvertiseAddr is the "host:port" other nodes dial. Empty: the bound
	// address when BindAddr names a host, else this machine's only private
	// IPv4 address with the bound port.
	AdvertiseAddr string
	// AllowPeer decides which connections the raft transport accepts: a
	// connection whose remote address it refuses is closed before raft
	// reads a byte (and logged, once a minute per IP). It is called on
	// every incoming connection, from raft's accept loop, so it must be
	// fast and safe for concurrent use; it sees the membership as it is at
	// that moment (the node allows the IPs of its current gossip members).
	// Loopback is not special: the function decides. nil allows every
	// address.
	AllowPeer func(remote net.Addr) bool
	// Logger receives raft's logs (bridged from hclog) and the store's own.
	Logger *slog.Logger
	// Tune adjusts the raft configuration after the defaults are set (tests
	// tighten timeouts and snapshot thresholds). LocalID, Logger and
	// NotifyCh are reset after it.
	Tune func(*raft.Config)
	// Now is the clock used for membership reaping.
	Now func() time.Time
}

// DefaultConfig is a Config with the defaults filled in; Dir and NodeID
// remain to be set. Raft's own settings start from raft.DefaultConfig().
func DefaultConfig() Config {
	return Config{BindAddr: DefaultBindAddr, Now: time.Now}
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("raftstore: Dir is required"))
	}
	if strings.TrimSpace(c.NodeID) == "" || strings.ContainsAny(c.NodeID, " \t\r\n") {
		errs = append(errs, fmt.Errorf("raftstore: NodeID %q must be non-empty without spaces", c.NodeID))
	}
	if _, _, err := splitHostPort(c.BindAddr, true); err != nil {
		errs = append(errs, fmt.Errorf("raftstore: BindAddr: %w", err))
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr, false)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("raftstore: AdvertiseAddr: %w", err))
		case host == "" || isUnspecified(host):
			errs = append(errs, fmt.Errorf("raftstore: AdvertiseAddr %q must name a reachable host", c.AdvertiseAddr))
		case port == 0:
			errs = append(errs, fmt.Errorf("raftstore: AdvertiseAddr %q needs a port", c.AdvertiseAddr))
		}
	}
	return errors.Join(errs...)
}

func splitHostPort(addr string, allowZero bool) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 || (port == 0 && !allowZero) {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// Store is this node's replica of the cluster configuration.
type Store struct {
	cfg   Config
	log   *slog.Logger
	fsm   *fsm
	raft  *raft.Raft
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	logs  raft.LogStore
	snaps raft.SnapshotStore

	notifyCh chan bool
	ctx      context.Context // canceled by Shutdown; owns every goroutine below
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	closed       atomic.Bool
	leaderReady  atomic.Bool // this leader's FSM has applied everything committed before its term
	shutdownOnce sync.Once
	shutdownErr  error

	leaderChanges atomic.Uint64 // leaders seen (observeLeaders)

	seedMu sync.Mutex
	seed   []Command

	reconcileMu sync.Mutex
	deadSince   map[string]time.Time // member ID → first seen dead (or missing)
	unreachable map[string]string    // member ID → raft address last found unreachable
}

// Open opens the log, stable and snapshot stores, starts the transport and
// raft. It does not bootstrap: call BootstrapSelf, Bootstrap or
// BootstrapExpect on a node without state (HasState), or let the leader
// add it.
func Open(cfg Config) (_ *Store, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	log := cfg.Logger
	hl := newHclog(log, "raft")

	s := &Store{cfg: cfg, log: log, fsm: newFSM(log), notifyCh: make(chan bool, 8), deadSince: map[string]time.Time{}, unreachable: map[string]string{}}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	// A bounded lock wait: a second process on the same Dir fails instead
	// of hanging.
	boltOpts := *bbolt.DefaultOptions
	boltOpts.Timeout = boltLockWait
	s.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db"), BoltOptions: &boltOpts})
	if err != nil {
		return nil, fmt.Errorf("raftstore: open raft.db: %w", err)
	}
	closers = append(closers, s.bolt.Close)
	if s.logs, err = raft.NewLogCache(logCacheEntries, s.bolt); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	if s.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainSnapshots, hl.Named("snapshot")); err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("raftstore: raft transport on %s: %w", cfg.BindAddr, err)
	}
	stream := newStreamLayer(ln, advertise, cfg.AllowPeer, log)
	if err := stream.checkAdvertisable(); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("raftstore: raft transport on %s: %w", cfg.BindAddr, err)
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportPool, Timeout: transportTimeout, Logger: hl.Named("transport"),
		// One RPC in flight turns pipelined replication off. The pipeline
		// can wedge when a follower answers Success=false (raft's
		// pipelineReplicate blocks on a send nobody reads, and
		// Raft.Shutdown then waits forever; hashicorp/raft#612). A
		// configuration store writes rarely and gains nothing from it.
		MaxRPCsInFlight: 1,
	})
	closers = append(closers, s.trans.Close)

	rc := raft.DefaultConfig()
	// A removed server stays up as a follower outside the configuration
	// (it cannot start elections), so the leader can add it back when it
	// returns, instead of it shutting down for good.
	rc.ShutdownOnRemove = false
	if cfg.Tune != nil {
		cfg.Tune(rc)
	}
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.NotifyCh = s.notifyCh
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftstore: raft config: %w", err)
	}
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.bolt, s.snaps, s.trans); err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}

	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.monitorLeadership()
	s.observeLeaders()
	log.Info("raft started", "id", cfg.NodeID, "addr", s.trans.LocalAddr(), "has_state", s.HasState())
	return s, nil
}

// advertiseAddr resolves the address other nodes dial; nil lets the
// transport advertise its bound address.
func advertiseAddr(cfg Config) (*net.TCPAddr, error) {
	if cfg.AdvertiseAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("raftstore: AdvertiseAddr: %w", err)
		}
		return a, nil
	}
	host, port, _ := splitHostPort(cfg.BindAddr, true)
	if !isUnspecified(host) {
		return nil, nil
	}
	if port == 0 {
		return nil, fmt.Errorf("raftstore: BindAddr %q has no host and no port: set AdvertiseAddr", cfg.BindAddr)
	}
	ip, err := privateIPv4()
	if err != nil {
		return nil, fmt.Errorf("raftstore: BindAddr %q names no host: %w; set AdvertiseAddr", cfg.BindAddr, err)
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

// privateIPv4 is this machine's only private IPv4 address (the rule
// memberlist and Consul use); none or several is an error.
func privateIPv4() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var found []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsPrivate() {
			found = append(found, n.IP.To4())
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("no private IPv4 address found")
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("several private IPv4 addresses found (%v)", found)
}

// ID is this node's raft server ID.
func (s *Store) ID() string { return s.cfg.NodeID }

// Addr is the raft address other nodes dial (with the real port when
// BindAddr used port 0).
func (s *Store) Addr() string { return string(s.trans.LocalAddr()) }

// HasState reports whether raft state exists on disk (this node was
// bootstrapped or has joined a cluster before).
func (s *Store) HasState() bool {
	ok, err := raft.HasExistingState(s.logs, s.bolt, s.snaps)
	if err != nil {
		s.log.Warn("reading raft state", "error", err)
	}
	return ok
}

// Apply validates cmd against the current configuration and, if valid,
// replicates it through raft. It returns the Raft index of the change (pass
// it to WaitIndex on any node to read your write there). Errors:
// *ValidationError, ErrNotFound, ErrConflict (also when a concurrent change
// won the race: the FSM re-checks), *NotLeaderError (ErrNotLeader) on a
// follower, ErrNoLeader, ErrClosed, or ctx's error (the change may still be
// applied).
func (s *Store) Apply(ctx context.Context, cmd Command) (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if cmd.Op == opSeed {
		return 0, &ValidationError{Fields: map[string]string{"op": "seeds are applied only at bootstrap"}}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.raft.State() != raft.Leader {
		return 0, s.notLeader()
	}
	if !s.leaderReady.Load() {
		// Newly elected: entries committed by the previous leader may not
		// be applied here yet; validate against the caught-up state.
		if err := s.wait(ctx, s.raft.Barrier(0)); err != nil {
			return 0, err
		}
	}
	cmd = cmd.clone()
	if err := s.fsm.check(&cmd); err != nil {
		return 0, err
	}
	return s.apply(ctx, cmd)
}

func (s *Store) apply(ctx context.Context, cmd Command) (uint64, error) {
	b, err := encodeCommand(cmd)
	if err != nil {
		return 0, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	f := s.raft.Apply(b, timeout)
	if err := s.wait(ctx, f); err != nil {
		return 0, err
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return 0, resp
	}
	s.log.Info("configuration changed", "command", cmd, "index", f.Index())
	return f.Index(), nil
}

// wait waits for a raft future, or for ctx. Raft resolves every future
// (at the latest with ErrRaftShutdown), so the helper goroutine ends.
func (s *Store) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return s.translate(err)
	case <-ctx.Done():
		return fmt.Errorf("raftstore: gave up waiting, the change may still be applied: %w", ctx.Err())
	}
}

// translate maps raft's errors to this package's.
func (s *Store) translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("raftstore: leadership lost before the change was committed; it may or may not be applied: %w", err)
	}
	return fmt.Errorf("raftstore: %w", err)
}

// notLeader is *NotLeaderError naming the known leader, or ErrNoLeader.
func (s *Store) notLeader() error {
	if s.closed.Load() {
		return ErrClosed
	}
	addr, id := s.raft.LeaderWithID()
	if addr == "" || string(id) == s.cfg.NodeID {
		return ErrNoLeader
	}
	return &NotLeaderError{LeaderAddr: string(addr), LeaderID: string(id)}
}

// Snapshot returns the current configuration (a deep copy).
func (s *Store) Snapshot() Snapshot { return s.fsm.snapshot() }

// WaitIndex waits until this node has applied the Raft index (as returned by
// Apply on the leader): read-your-writes on any node.
func (s *Store) WaitIndex(ctx context.Context, index uint64) error {
	for {
		cur, advanced := s.fsm.index()
		if cur >= index {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// Changes delivers a coalesced notification (buffer 1) after each applied
// change and each snapshot restore: on receipt, read Snapshot. It is one
// channel per store, for one consumer.
func (s *Store) Changes() <-chan struct{} { return s.fsm.changes }

// Leader is the current leader's raft address and ID ("" when unknown).
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// IsLeader reports whether this node is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// WaitLeader waits until a leader is known.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// Server is a member of the raft configuration.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"` // "voter" | "nonvoter"
	Leader   bool   `json:"leader"`
}

// Status is this node's view of raft.
type Status struct {
	State        string   `json:"state"` // "follower" | "candidate" | "leader" | "shutdown"
	Term         uint64   `json:"term"`
	LastIndex    uint64   `json:"last_index"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	LeaderID     string   `json:"leader_id"`
	LeaderAddr   string   `json:"leader_addr"`
	Servers      []Server `json:"servers"`
}

// IsLeader reports whether the node was the Raft leader when the status was
// taken.
func (st Status) IsLeader() bool { return st.State == "leader" }

// Status reports this node's raft state and the configuration it knows.
func (s *Store) Status() Status {
	addr, id := s.raft.LeaderWithID()
	st := Status{
		State:        strings.ToLower(s.raft.State().String()),
		Term:         s.raft.CurrentTerm(),
		LastIndex:    s.raft.LastIndex(),
		AppliedIndex: s.raft.AppliedIndex(),
		CommitIndex:  s.raft.CommitIndex(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
	}
	servers, _ := s.servers()
	for _, srv := range servers {
		st.Servers = append(st.Servers, Server{
			ID: string(srv.ID), Address: string(srv.Address), Suffrage: suffrage(srv.Suffrage),
			Leader: id != "" && srv.ID == id,
		})
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return strings.ToLower(s.String())
}

func (s *Store) servers() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.translate(err)
	}
	return f.Configuration().Servers, nil
}

// TransferLeadership hands leadership to the most up-to-date other voter.
func (s *Store) TransferLeadership() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("raftstore: leadership transfer: %w", err)
	}
	return nil
}

// Shutdown stops the store; it is idempotent. A leader first hands
// leadership to another voter (best effort, bounded) so the cluster does
// not wait an election timeout; then raft stops, and the transport and
// raft.db are closed.
func (s *Store) Shutdown() error {
	s.shutdownOnce.Do(func() {
		s.closed.Store(true)
		if s.raft.State() == raft.Leader && s.otherVoters() > 0 {
			f := s.raft.LeadershipTransfer()
			done := make(chan error, 1)
			go func() { done <- f.Error() }() // resolved by raft at the latest by Shutdown below
			t := time.NewTimer(transferBound)
			select {
			case err := <-done:
				if err != nil {
					s.log.Warn("leadership transfer before shutdown failed", "error", err)
				} else {
					s.log.Info("leadership transferred before shutdown")
				}
			case <-t.C:
				s.log.Warn("leadership transfer before shutdown timed out")
			}
			t.Stop()
		}
		s.cancel()
		var errs []error
		// Stop raft, then close the transport before waiting for raft's
		// goroutines, so none stays blocked on a peer that does not answer.
		f := s.raft.Shutdown()
		if err := s.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: close transport: %w", err))
		}
		if err := f.Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: raft shutdown: %w", err))
		}
		s.wg.Wait()
		if err := s.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftstore: close raft.db: %w", err))
		}
		s.shutdownErr = errors.Join(errs...)
		s.log.Info("raft stopped", "id", s.cfg.NodeID)
	})
	return s.shutdownErr
}

func (s *Store) otherVoters() int {
	servers, err := s.servers()
	if err != nil {
		return 0
	}
	n := 0
	for _, srv := range servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != s.cfg.NodeID {
			n++
		}
	}
	return n
}

// monitorLeadership follows raft's leadership notifications and runs
// establishLeadership while this node leads (nomad's monitorLeadership).
func (s *Store) monitorLeadership() {
	defer s.wg.Done()
	type term struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var leading *term
	end := func() {
		if leading != nil {
			leading.cancel()
			<-leading.done
			leading = nil
		}
	}
	defer end()
	for {
		select {
		case leader := <-s.notifyCh:
			if leader && leading == nil {
				s.leaderReady.Store(false)
				ctx, cancel := context.WithCancel(s.ctx)
				leading = &term{cancel: cancel, done: make(chan struct{})}
				go func(done chan struct{}) {
					defer close(done)
					s.establishLeadership(ctx)
				}(leading.done)
				s.log.Info("raft leadership acquired", "id", s.cfg.NodeID)
			} else if !leader && leading != nil {
				s.leaderReady.Store(false)
				end()
				s.log.Info("raft leadership lost", "id", s.cfg.NodeID)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// establishLeadership runs once per leadership: a barrier brings the FSM
// up to date with everything committed before this term (so validation on
// this leader sees it), then the bootstrap seed is applied if this node was
// given one and the cluster was never seeded.
func (s *Store) establishLeadership(ctx context.Context) {
	if err := s.wait(ctx, s.raft.Barrier(0)); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("leader barrier", "error", err)
		}
		return
	}
	s.leaderReady.Store(true)
	if err := s.applySeed(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("applying the bootstrap seed", "error", err)
	}
}

func (s *Store) setSeed(seed []Command) {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	s.seed = make([]Command, len(seed))
	for i, c := range seed {
		s.seed[i] = c.clone()
	}
}

// applySeed applies the seed once in the cluster's life; the FSM's seeded
// marker makes a second application (another leader, a retry) a no-op.
func (s *Store) applySeed(ctx context.Context) error {
	s.seedMu.Lock()
	seed := s.seed
	s.seedMu.Unlock()
	if len(seed) == 0 || s.fsm.seeded() {
		return nil
	}
	// Catch up with everything committed before deciding.
	if !s.leaderReady.Load() {
		if err := s.wait(ctx, s.raft.Barrier(0)); err != nil {
			return err
		}
	}
	if s.fsm.seeded() {
		return nil
	}
	idx, err := s.apply(ctx, seedCommand(seed))
	if err != nil {
		return err
	}
	s.log.Info("bootstrap seed applied", "index", idx, "commands", len(seed))
	return nil
}
