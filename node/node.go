// Package node is one hfcache node: it resolves what clients ask for
// (revisions to commits, files to content addresses), decides who may see
// it, and serves the bytes, filling each blob from the upstream Hub at most
// once for the whole cluster while every concurrent reader streams from the
// partly written file.
//
// In a cluster, metadata is resolved by the repository's owner on the
// consistent-hash ring and bytes are served by the blob's owner; a node that
// is neither proxies to them (one hop: a forwarded request is served, never
// forwarded again) and serves from its own disk whatever it holds. What the
// repository's owner answers is kept: a file's metadata at a commit for
// good, a branch's commit for what is left of the owner's ref TTL. A new
// owner copies a blob from a previous owner before asking the Hub.
//
// The node knows nothing about HTTP routes; the httpapi package parses
// requests into typed values (package hf) and calls the node. The node talks
// to upstreams through the Hub interface, to disk through Store, to gossip
// and the ring through Membership and Ring — all declared here and satisfied
// by hubclient, node/store, node/membership and ring. DESIGN.md says why the
// pieces are shaped as they are.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
	"golang.org/x/sync/singleflight"
)

// Hub is what the node needs from an upstream Hub.
type Hub interface {
	HeadFile(ctx context.Context, repo hf.Repo, rev hf.Revision, path hf.Path, token string) (*hubclient.FileMeta, error)
	GetFile(ctx context.Context, repo hf.Repo, rev hf.Revision, path hf.Path, token, loc string, off, end int64) (*hubclient.Body, error)
	Do(ctx context.Context, method, escapedPath, rawQuery string, header http.Header, body []byte) (*http.Response, error)
	XetReadToken(ctx context.Context, repo hf.Repo, rev hf.Revision, token string) (*hubclient.XetToken, error)
	Fetch(ctx context.Context, rawURL string, header http.Header) (*http.Response, error)
	URL(escapedPath string) string
}

// Store is what the node needs from the local content store.
type Store interface {
	Stat(id hf.BlobID) (int64, bool)
	Open(id hf.BlobID) (*store.Blob, error)
	Create(id hf.BlobID, size int64) (BlobWriter, error)
	PutMeta(bucket, key string, value []byte) error
	PutMetaBatch(puts []store.MetaPut) error
	GetMeta(bucket, key string) ([]byte, bool, error)
	DeleteMeta(bucket, key string) error
	ScanMeta(bucket, prefix string, fn func(key string, value []byte)) error
	EvictAmong(ids []hf.BlobID, limit int64) int64

	// Xet chunks, held sparsely per xorb (see store.XorbChunk).
	PutXorbChunks(xorb string, chunks []store.XorbChunk, data [][]byte) error
	XorbChunks(xorb string) ([]store.XorbChunk, error)
	VerifyXorbChunks(xorb string, idx []uint32) error
	DropXorbChunks(xorb string, idx []uint32) error
	OpenXorb(xorb string) (*store.XorbFile, error)
}

// BlobWriter is a blob being written into the store: written at offsets,
// readable while written, verified by Commit.
type BlobWriter interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	Commit() error
	Abort()
	Close() error
}

// LocalStore adapts the on-disk store to the node's Store.
func LocalStore(s *store.Store) Store { return localStore{s} }

type localStore struct{ *store.Store }

func (l localStore) Create(id hf.BlobID, size int64) (BlobWriter, error) {
	f, err := l.Store.Create(id, size)
	if err != nil {
		return nil, err
	}
	return f, nil
}

var (
	_ Hub        = (*hubclient.Client)(nil)
	_ BlobWriter = (*store.Fill)(nil)
)

// Config configures a node.
type Config struct {
	// Name identifies the node in responses (X-Hfcache-Node) and logs.
	Name string
	// AuthTTL is how long the Hub's acceptance of a caller's token for a
	// gated or private repository is trusted without asking again.
	AuthTTL time.Duration
	// FarRange is how far past the fill point a range must start to be
	// fetched upstream directly instead of waiting for the fill.
	FarRange int64
	// FillRetries is how many times a broken upstream stream is resumed.
	FillRetries int
	// MetaEntries and MetaBytes bound the in-memory metadata cache:
	// entries, and their approximate size (an API answer counts its body).
	// What does not fit is read back from the store when asked for.
	MetaEntries int
	MetaBytes   int
	// Cluster, when set, routes metadata to the repository's owner and
	// blobs to the blob's owner; nil runs a single node.
	Cluster *Cluster
	// PeerAuth signs requests to peers and verifies theirs.
	PeerAuth PeerAuth
	// PeerTLS is the TLS client configuration for peers' https URLs (their
	// CA, and this node's client certificate for mutual TLS); nil: defaults.
	PeerTLS *tls.Config
	// HotThreshold is how many times a non-owner serves a blob within
	// HotWindow before it keeps a copy of its own (0 disables); hot copies
	// take at most HotFraction of the store budget.
	HotThreshold int
	HotWindow    time.Duration
	HotBytes     int64
	// FillStreams ranged upstream requests of FillChunk bytes fill a large
	// blob in parallel (1: one stream). A Hub that ignores Range gets one.
	FillStreams int
	FillChunk   int64
	// MaxFills caps concurrent upstream fills on this node; past it a
	// request for an uncached blob gets ErrBusy (429 with Retry-After).
	MaxFills int
	// WarmInterval is how often the warm list is walked again (so new
	// commits on warmed branches are fetched).
	WarmInterval time.Duration
	// JobConcurrency is how many files of a prefetch job each owner fills
	// at a time.
	JobConcurrency int
	Logger         *slog.Logger
	Now            func() time.Time
	// Metrics, when set, counts fills and peer traffic and reports the
	// node's state (NewMetrics; one per node); nil counts nothing.
	Metrics *Metrics
	// XetSecret keys the Xet access tokens and xorb URLs the node issues;
	// every node of a cluster needs the same (the cluster secret). Empty:
	// a random key of this process.
	XetSecret string
	// XetTokenTTL is the lifetime of the Xet access tokens the node issues
	// (0: one hour).
	XetTokenTTL time.Duration
}

// DefaultConfig is a node's configuration with production defaults.
func DefaultConfig() Config {
	return Config{
		Name:           "hfcache",
		AuthTTL:        5 * time.Minute,
		FarRange:       64 << 20,
		FillRetries:    5,
		MetaEntries:    200_000,
		MetaBytes:      256 << 20,
		HotThreshold:   20,
		HotWindow:      time.Minute,
		WarmInterval:   time.Minute,
		JobConcurrency: 4,
		MaxFills:       64,
		FillStreams:    8,
		FillChunk:      16 << 20,
		Logger:         slog.Default(),
		Now:            time.Now,
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("node: name is empty"))
	}
	if c.AuthTTL <= 0 {
		errs = append(errs, fmt.Errorf("node: auth TTL %v must be positive", c.AuthTTL))
	}
	if c.FarRange <= 0 {
		errs = append(errs, errors.New("node: far range must be positive"))
	}
	if c.MaxFills <= 0 {
		errs = append(errs, errors.New("node: max fills must be positive"))
	}
	if c.WarmInterval <= 0 {
		errs = append(errs, errors.New("node: warm interval must be positive"))
	}
	if c.JobConcurrency <= 0 {
		errs = append(errs, errors.New("node: job concurrency must be positive"))
	}
	if c.MetaEntries <= 0 || c.MetaBytes <= 0 {
		errs = append(errs, errors.New("node: meta entries and bytes must be positive"))
	}
	if c.Logger == nil || c.Now == nil {
		errs = append(errs, errors.New("node: logger and clock are required"))
	}
	return errors.Join(errs...)
}

// Node serves Hub content from its store, filling it from the Hub.
type Node struct {
	cfg     Config
	store   Store
	remotes atomic.Pointer[map[string]*Remote]
	quotas  atomic.Pointer[map[string]int64]
	log     *slog.Logger

	meta   *metaCache
	access *accessCache
	group  singleflight.Group

	cluster *Cluster
	peers   *peerClient
	hot     *hotCounter
	metrics *Metrics
	// activity is what the status page shows: repositories served,
	// recent errors.
	activity *activity

	warmMu    sync.Mutex
	warmItems []WarmItem
	warmKick  chan struct{}
	jobs      *jobTable

	mu    sync.Mutex
	fills map[hf.BlobID]*fill

	xet *xetState

	// ctx bounds background work (fills); cancel and wg stop it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a node serving from remotes. It does no I/O.
func New(cfg Config, st Store, remotes ...*Remote) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:      cfg,
		store:    st,
		log:      cfg.Logger,
		meta:     newMetaCache(st, cfg.MetaEntries, cfg.MetaBytes, cfg.Logger),
		access:   newAccessCache(cfg.Now),
		fills:    make(map[hf.BlobID]*fill),
		cluster:  cfg.Cluster,
		peers:    newPeerClient(cfg.PeerAuth, cfg.PeerTLS),
		hot:      newHotCounter(cfg.HotThreshold, cfg.HotWindow, cfg.Now),
		warmKick: make(chan struct{}, 1),
		jobs:     newJobTable(),
		metrics:  cfg.Metrics,
		activity: newActivity(),
		xet:      newXetState(cfg.XetSecret),
		ctx:      ctx,
		cancel:   cancel,
	}
	if err := cfg.Metrics.bind(n); err != nil {
		cancel()
		return nil, err
	}
	if cfg.XetTokenTTL > 0 {
		n.xet.tokenTTL = cfg.XetTokenTTL
	}
	n.SetRemotes(remotes)
	return n, nil
}

// Start runs the node's background work: the cluster's event loop that
// feeds membership into the ring, the warmer of immediate remotes and the
// writer that persists metadata behind the request path.
func (n *Node) Start() {
	// The system's MIME table loads on first use; load it now rather than
	// on the first cold request's path (a few ms of file reads).
	contentTypeFor("x.json")
	n.wg.Add(2)
	go n.warmLoop(n.cfg.WarmInterval)
	go func() {
		defer n.wg.Done()
		n.meta.run(n.ctx)
	}()
	if n.cluster != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.cluster.run(n.ctx)
		}()
	}
}

// RingMembers are the nodes the ring places keys on, as this node sees it.
func (n *Node) RingMembers() []string {
	if n.cluster == nil {
		return []string{n.cfg.Name}
	}
	return n.cluster.RingMembers()
}

// OpenPeerToken decrypts an upstream token a peer sent.
func (n *Node) OpenPeerToken(sealed string) (string, error) { return n.cfg.PeerAuth.OpenToken(sealed) }

// VerifyPeer authenticates a request from another node.
func (n *Node) VerifyPeer(r *http.Request) error { return n.cfg.PeerAuth.Verify(r) }

// Owns reports whether this node owns a blob on the current ring (a single
// node owns everything). The store evicts blobs it does not own first.
func (n *Node) Owns(id hf.BlobID) bool { return n.cluster == nil || n.cluster.Owns(id.String()) }

// OwnsXorb reports whether this node owns a xorb's chunks on the current
// ring; the store evicts xorbs it does not own first.
func (n *Node) OwnsXorb(xorb string) bool { return n.cluster == nil || n.cluster.Owns(xorbKey(xorb)) }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Shutdown stops background fills and waits for them, or for ctx.
func (n *Node) Shutdown(ctx context.Context) error {
	n.cancel()
	n.peers.close()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
