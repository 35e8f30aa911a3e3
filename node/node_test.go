package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// fakeHub is a hand-written Hub whose behaviour each test sets.
type fakeHub struct {
	head func(ctx context.Context, repo hf.Repo, rev hf.Revision, p hf.Path, token string) (*hubclient.FileMeta, error)
	get  func(ctx context.Context, off, end int64) (*hubclient.Body, error)

	heads, gets atomic.Int32
	mu          sync.Mutex
	offsets     []int64
}

func (h *fakeHub) HeadFile(ctx context.Context, repo hf.Repo, rev hf.Revision, p hf.Path, token string) (*hubclient.FileMeta, error) {
	h.heads.Add(1)
	return h.head(ctx, repo, rev, p, token)
}

func (h *fakeHub) GetFile(ctx context.Context, repo hf.Repo, rev hf.Revision, p hf.Path, token, loc string, off, end int64) (*hubclient.Body, error) {
	h.gets.Add(1)
	h.mu.Lock()
	h.offsets = append(h.offsets, off)
	h.mu.Unlock()
	return h.get(ctx, off, end)
}

func (h *fakeHub) Do(context.Context, string, string, string, http.Header, []byte) (*http.Response, error) {
	return nil, errors.New("not used")
}

func (h *fakeHub) URL(p string) string { return "http://hub.test" + p }

func (h *fakeHub) XetReadToken(context.Context, hf.Repo, hf.Revision, string) (*hubclient.XetToken, error) {
	return nil, errors.New("not used")
}

func (h *fakeHub) Fetch(context.Context, string, http.Header) (*http.Response, error) {
	return nil, errors.New("not used")
}

const testCommit = "0123456789abcdef0123456789abcdef01234567"

var testRepo = hf.Repo{Type: hf.Model, ID: "acme/m"}

// serving returns a fakeHub serving data as an LFS file (its metadata says
// sha256(meta)), with body() deciding what the bytes stream looks like.
func serving(meta []byte, body func(off int64) io.Reader) *fakeHub {
	return &fakeHub{
		head: func(_ context.Context, _ hf.Repo, _ hf.Revision, _ hf.Path, _ string) (*hubclient.FileMeta, error) {
			return &hubclient.FileMeta{Commit: testCommit, ETag: hf.SHA256Hex(meta), LFS: true, Size: int64(len(meta))}, nil
		},
		get: func(_ context.Context, off, end int64) (*hubclient.Body, error) {
			return &hubclient.Body{ReadCloser: io.NopCloser(body(off)), Status: 206, Size: int64(len(meta))}, nil
		},
	}
}

func newTestNode(t *testing.T, hub Hub, budget int64, st func(Store) Store) (*Node, *store.Store) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := store.Open(store.Config{Dir: t.TempDir(), Budget: budget, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var ns Store = LocalStore(s)
	if st != nil {
		ns = st(ns)
	}
	cfg := DefaultConfig()
	cfg.Logger = log
	cfg.FarRange = 1 << 20
	cfg.FillRetries = 1
	n, err := New(cfg, ns, &Remote{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyOnDemand})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		s.Close()
	})
	return n, s
}

// openW resolves and opens w.bin; the caller closes the Content.
func openW(t *testing.T, n *Node) (*File, *Content) {
	t.Helper()
	f, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func resolveAndRead(t *testing.T, n *Node, off, end int64) ([]byte, *Content, error) {
	t.Helper()
	f, c := openW(t, n)
	defer c.Close()
	if end < 0 {
		end = f.Size
	}
	r, err := c.Reader(context.Background(), off, end)
	if err != nil {
		return nil, c, err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	return got, c, err
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// A fill whose bytes do not match their address fails every reader before
// its last byte, stores nothing, and the next request fills again.
func TestCorruptFillAbortsReadersBeforeLastByte(t *testing.T) {
	good := payload(3<<20 + 5)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(bad[off:]) })
	n, st := newTestNode(t, hub, 1<<30, nil)

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := resolveAndRead(t, n, 0, -1)
			if err == nil || !errors.Is(err, ErrFillFailed) {
				t.Errorf("reader finished with %v, want ErrFillFailed", err)
			}
			if len(got) >= len(good) {
				t.Errorf("reader got all %d bytes of a corrupt blob", len(got))
			}
		}()
	}
	wg.Wait()
	id, _ := hf.NewBlobID(hf.SHA256, hf.SHA256Hex(good))
	if _, ok := st.Stat(id); ok {
		t.Fatal("corrupt blob was stored")
	}
	// The Hub fixed its bytes: the next request fills again and succeeds.
	hub.get = func(_ context.Context, off, _ int64) (*hubclient.Body, error) {
		return &hubclient.Body{ReadCloser: io.NopCloser(bytes.NewReader(good[off:])), Status: 206, Size: int64(len(good))}, nil
	}
	got, _, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("refill: %v, %d bytes", err, len(got))
	}
	if _, ok := st.Stat(id); !ok {
		t.Fatal("refilled blob not stored")
	}
}

// A broken upstream stream is resumed with a Range from where it stopped.
func TestFillResumesBrokenStream(t *testing.T) {
	good := payload(2<<20 + 11)
	var calls atomic.Int32
	hub := serving(good, func(off int64) io.Reader {
		if calls.Add(1) == 1 {
			return io.MultiReader(bytes.NewReader(good[off:off+700_000]), errReader{io.ErrUnexpectedEOF})
		}
		return bytes.NewReader(good[off:])
	})
	n, _ := newTestNode(t, hub, 1<<30, nil)
	got, _, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read: %v, %d bytes", err, len(got))
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if fmt.Sprint(hub.offsets) != "[0 700000]" {
		t.Fatalf("upstream offsets %v, want a resume at 700000", hub.offsets)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// No room in the budget: the client still gets every byte, nothing is stored.
func TestNoSpacePassesThrough(t *testing.T) {
	good := payload(1 << 20)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	n, st := newTestNode(t, hub, 1000, nil)
	got, c, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read: %v, %d bytes", err, len(got))
	}
	if c.Source != SourceUpstream || st.Stats().Blobs != 0 {
		t.Fatalf("source %s, %d blobs stored", c.Source, st.Stats().Blobs)
	}
}

// enospcStore fails every write after the first with ENOSPC, like a full disk.
type enospcStore struct{ Store }

func (s enospcStore) Create(id hf.BlobID, size int64) (BlobWriter, error) {
	w, err := s.Store.Create(id, size)
	if err != nil {
		return nil, err
	}
	return &enospcWriter{BlobWriter: w}, nil
}

type enospcWriter struct {
	BlobWriter
	writes int
}

func (w *enospcWriter) WriteAt(p []byte, off int64) (int, error) {
	if w.writes++; w.writes > 1 {
		return 0, fmt.Errorf("%w: %w", store.ErrDiskFull, syscall.ENOSPC)
	}
	return w.BlobWriter.WriteAt(p, off)
}

// The disk fills up mid-fill: readers get the rest of the bytes straight from
// the Hub, and nothing half-written is indexed.
func TestDiskFullMidFillPassesThrough(t *testing.T) {
	good := payload(3 << 20)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	n, st := newTestNode(t, hub, 1<<30, func(s Store) Store { return enospcStore{s} })
	got, _, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read: %v, %d of %d bytes", err, len(got), len(good))
	}
	if s := st.Stats(); s.Blobs != 0 || s.Reserved != 0 {
		t.Fatalf("after a disk-full fill: %+v", s)
	}
}

// A range far past the fill point is fetched from the Hub directly instead
// of waiting for the fill to get there.
func TestFarRangeGoesUpstream(t *testing.T) {
	good := payload(8 << 20)
	release := make(chan struct{})
	hub := serving(good, func(off int64) io.Reader {
		if off == 0 {
			// The fill: stalls after 64 KiB until the test ends.
			return io.MultiReader(bytes.NewReader(good[:64<<10]), blockReader{release, bytes.NewReader(good[64<<10:])})
		}
		return bytes.NewReader(good[off:])
	})
	n, _ := newTestNode(t, hub, 1<<30, nil)
	defer close(release)
	f, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	off := int64(6 << 20)
	r, err := c.Reader(context.Background(), off, off+1000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, good[off:off+1000]) {
		t.Fatalf("far range: %v, %d bytes", err, len(got))
	}
}

type blockReader struct {
	wait <-chan struct{}
	r    io.Reader
}

func (b blockReader) Read(p []byte) (int, error) {
	<-b.wait
	return b.r.Read(p)
}

// Metadata is fetched once per ref TTL, and served stale (marked so) while
// the Hub is unreachable.
func TestRefTTLAndStaleWhileUnreachable(t *testing.T) {
	good := payload(100)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	now := time.Unix(1_700_000_000, 0)
	var clock sync.Mutex
	n, _ := newTestNode(t, hub, 1<<30, nil)
	n.cfg.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	n.access.now = n.cfg.Now
	req := FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"}
	for i := 0; i < 3; i++ {
		if _, err := n.Resolve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if hub.heads.Load() != 1 {
		t.Fatalf("%d HEADs within the TTL, want 1", hub.heads.Load())
	}
	clock.Lock()
	now = now.Add(2 * time.Minute)
	clock.Unlock()
	hub.head = func(context.Context, hf.Repo, hf.Revision, hf.Path, string) (*hubclient.FileMeta, error) {
		return nil, fmt.Errorf("%w: connection refused", hubclient.ErrUnreachable)
	}
	f, err := n.Resolve(context.Background(), req)
	if err != nil || !f.Stale || f.Commit != testCommit {
		t.Fatalf("offline resolve: %+v, %v", f, err)
	}
	// A file never seen cannot be served offline.
	if _, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "other.bin"}); !errors.Is(err, hubclient.ErrUnreachable) {
		t.Fatalf("unknown file offline: %v", err)
	}
}

// Past MaxFills concurrent fills, a request for another uncached blob is
// told to come back (ErrBusy → 429), and joining a running fill still works.
func TestMaxFills(t *testing.T) {
	good := payload(1 << 20)
	release := make(chan struct{})
	hub := serving(good, func(off int64) io.Reader { return blockReader{release, bytes.NewReader(good[off:])} })
	n, _ := newTestNode(t, hub, 1<<30, nil)
	defer close(release)
	n.cfg.MaxFills = 1
	f, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := n.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := n.Open(context.Background(), f) // the same blob joins the fill
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	other := *f
	other.Blob, _ = hf.NewBlobID(hf.SHA256, hf.SHA256Hex([]byte("another blob")))
	if _, err := n.Open(context.Background(), &other); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second fill past the cap: %v, want ErrBusy", err)
	}
}

// A remote's maximum file size refuses bigger files before any byte moves.
func TestMaxFileSize(t *testing.T) {
	good := payload(5000)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	n, _ := newTestNode(t, hub, 1<<30, nil)
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyOnDemand, MaxFileSize: 4999}})
	_, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.Status != 403 || he.Code != "FileTooLarge" {
		t.Fatalf("over the limit: %v", err)
	}
	if hub.gets.Load() != 0 {
		t.Fatal("bytes were fetched for a refused file")
	}
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyOnDemand, MaxFileSize: 5000}})
	if _, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "w.bin"}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

// rangedHub serves data honouring [off, end) like a CDN, counting requests.
func rangedHub(data []byte) *fakeHub {
	h := serving(data, nil)
	h.get = func(_ context.Context, off, end int64) (*hubclient.Body, error) {
		if end < 0 {
			end = int64(len(data))
		}
		return &hubclient.Body{ReadCloser: io.NopCloser(bytes.NewReader(data[off:end])), Status: 206, Size: int64(len(data))}, nil
	}
	return h
}

// A large blob is filled with several ranged requests at once; readers
// stream it from the start as usual and get every byte right.
func TestParallelFill(t *testing.T) {
	good := payload(3<<20 + 5)
	hub := rangedHub(good)
	n, st := newTestNode(t, hub, 1<<30, nil)
	n.cfg.FillStreams, n.cfg.FillChunk = 4, 256<<10
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := resolveAndRead(t, n, 0, -1)
			if err != nil || !bytes.Equal(got, good) {
				t.Errorf("reader: %v, %d bytes", err, len(got))
			}
		}()
	}
	wg.Wait()
	if hub.gets.Load() != 13 { // ceil((3 MiB + 5) / 256 KiB) chunks, one request each
		t.Fatalf("%d ranged requests, want 13", hub.gets.Load())
	}
	id, _ := hf.NewBlobID(hf.SHA256, hf.SHA256Hex(good))
	if _, ok := st.Stat(id); !ok {
		t.Fatal("the parallel fill was not stored")
	}
}

// An upstream that ignores Range gets one stream; the blob is still right.
func TestParallelFillFallsBackToOneStream(t *testing.T) {
	good := payload(2<<20 + 1)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good) })
	hub.get = func(_ context.Context, off, end int64) (*hubclient.Body, error) {
		if off > 0 {
			return nil, hubclient.ErrRangeIgnored
		}
		return &hubclient.Body{ReadCloser: io.NopCloser(bytes.NewReader(good)), Status: 200, Size: int64(len(good))}, nil
	}
	n, _ := newTestNode(t, hub, 1<<30, nil)
	n.cfg.FillStreams, n.cfg.FillChunk = 4, 256<<10
	got, _, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read: %v, %d bytes", err, len(got))
	}
}

// A corrupt chunk in a parallel fill still fails every reader before the
// last byte.
func TestParallelFillCorrupt(t *testing.T) {
	good := payload(1<<20 + 3)
	bad := bytes.Clone(good)
	bad[700_000] ^= 1
	hub := rangedHub(bad)
	hub.head = serving(good, nil).head
	n, _ := newTestNode(t, hub, 1<<30, nil)
	n.cfg.FillStreams, n.cfg.FillChunk = 4, 128<<10
	got, _, err := resolveAndRead(t, n, 0, -1)
	if !errors.Is(err, ErrFillFailed) || len(got) >= len(good) {
		t.Fatalf("corrupt parallel fill: %v after %d bytes", err, len(got))
	}
}

func TestPeerTokenSealing(t *testing.T) {
	a := NewPeerAuth("secret", time.Now)
	s := a.SealToken("hf_caller_token")
	if s == "" || strings.Contains(s, "hf_caller_token") {
		t.Fatalf("sealed %q", s)
	}
	if got, err := a.OpenToken(s); err != nil || got != "hf_caller_token" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := NewPeerAuth("other", time.Now).OpenToken(s); !errors.Is(err, ErrPeerAuth) {
		t.Fatalf("another secret opened it: %v", err)
	}
	if a.SealToken("") != "" {
		t.Fatal("an empty token must stay empty")
	}
}

// openWhole resolves w.bin and opens a reader of all of it, closed with the
// test.
func openWhole(t *testing.T, n *Node) io.ReadCloser {
	t.Helper()
	f, c := openW(t, n)
	t.Cleanup(c.Close)
	r, err := c.Reader(context.Background(), 0, f.Size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// fileSink is a destination like a socket: its ReadFrom records whether it
// was handed a file (what sendfile needs) and keeps the bytes.
type fileSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	fromFile  int      // ReadFrom calls given a *io.LimitedReader around an *os.File
	otherRead int      // ReadFrom calls given anything else
	got       chan int // the newest total, capacity 1
}

func (s *fileSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *fileSink) ReadFrom(r io.Reader) (int64, error) {
	isFile := false
	if lr, ok := r.(*io.LimitedReader); ok {
		_, isFile = lr.R.(*os.File)
	}
	s.mu.Lock()
	if isFile {
		s.fromFile++
	} else {
		s.otherRead++
	}
	n, err := s.buf.ReadFrom(r)
	total := s.buf.Len()
	s.mu.Unlock()
	// got holds the newest total only. A total the test has not taken yet
	// is replaced, not kept in place of this one: the test waits for a
	// total, and a stale one would leave it waiting while the reader waits
	// for the fill. ReadFrom is the only sender, so the send cannot block.
	select {
	case <-s.got:
	default:
	}
	s.got <- total
	return n, err
}

// While a blob fills, a reader copied into a socket-like destination sends
// each readable stretch from its own file description (sendfile), bytes
// exact, across several waits for the fill; and a corrupt fill still fails
// it before the last byte.
func TestFillReaderSendsFromFile(t *testing.T) {
	good := payload(3<<20 + 5)
	half := len(good) / 2
	pr, pw := io.Pipe()
	hub := serving(good, func(off int64) io.Reader {
		if off != 0 {
			t.Errorf("upstream asked from %d", off)
		}
		return pr
	})
	n, _ := newTestNode(t, hub, 1<<30, nil)
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) }) // before the node's shutdown
	r := openWhole(t, n)
	sink := &fileSink{got: make(chan int, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(sink, r)
		done <- err
	}()
	if _, err := pw.Write(good[:half]); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for got := 0; got < half; {
		select {
		case got = <-sink.got:
		case <-deadline:
			t.Fatalf("the reader did not send the first half while the fill waited")
		}
	}
	go func() {
		pw.Write(good[half:])
		pw.Close()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.buf.Bytes(), good) {
		t.Fatalf("sent %d bytes, not the blob's", sink.buf.Len())
	}
	if sink.fromFile < 2 || sink.otherRead != 0 {
		t.Fatalf("ReadFrom given a file %d times and something else %d times; want the file, at least twice", sink.fromFile, sink.otherRead)
	}

	// A corrupt fill: the same path fails before the last byte.
	bad := payload(2<<20 + 3)
	want := bytes.Clone(bad)
	bad[len(bad)-10] ^= 1
	hub2 := serving(want, func(off int64) io.Reader { return bytes.NewReader(bad[off:]) })
	n2, _ := newTestNode(t, hub2, 1<<30, nil)
	r2 := openWhole(t, n2)
	sink2 := &fileSink{got: make(chan int, 1)}
	if _, err := io.Copy(sink2, r2); !errors.Is(err, ErrFillFailed) {
		t.Fatalf("corrupt fill: %v, want ErrFillFailed", err)
	}
	if sink2.buf.Len() >= len(want) {
		t.Fatalf("corrupt fill: all %d bytes were sent", sink2.buf.Len())
	}
}

// reopenENOSPCStore is enospcStore whose writers can still be reopened for
// sendfile, as the store's own fills can.
type reopenENOSPCStore struct{ Store }

func (s reopenENOSPCStore) Create(id hf.BlobID, size int64) (BlobWriter, error) {
	w, err := s.Store.Create(id, size)
	if err != nil {
		return nil, err
	}
	return reopenENOSPCWriter{&enospcWriter{BlobWriter: w}, w.(fileReopener)}, nil
}

type reopenENOSPCWriter struct {
	*enospcWriter
	fileReopener
}

// The disk fills up while a reader sends from the fill's file: what was
// written goes by sendfile, the rest comes from the Hub through a buffer,
// and the bytes are exact.
func TestFillReaderSendsThenSwitchesToHub(t *testing.T) {
	good := payload(3 << 20)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	n, _ := newTestNode(t, hub, 1<<30, func(s Store) Store { return reopenENOSPCStore{s} })
	r := openWhole(t, n)
	sink := &fileSink{got: make(chan int, 1)}
	if _, err := io.Copy(sink, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.buf.Bytes(), good) {
		t.Fatalf("sent %d bytes, not the blob's", sink.buf.Len())
	}
	if sink.fromFile < 1 || sink.otherRead != 0 {
		t.Fatalf("ReadFrom given a file %d times and something else %d times; want the written part from the file", sink.fromFile, sink.otherRead)
	}
}
