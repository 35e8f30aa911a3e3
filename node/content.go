package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// HeaderSource names where a response's bytes come from, one of the
// Source values below.
const HeaderSource = "X-Hfcache-Source"

// Where a response's bytes come from (X-Hfcache-Source).
const (
	SourceDisk     = "disk"
	SourceUpstream = "upstream"
	SourcePeer     = "peer"
	SourceXet      = "xet" // assembled from the cluster's Xet chunks
)

// Content is a file's bytes, ready to serve: either a complete blob on disk
// (serve File with http.ServeContent: ranges, conditionals and sendfile come
// free) or a blob being filled, read through Reader as bytes arrive.
type Content struct {
	Size   int64
	Source string

	n     *Node
	f     *File       // the request's own, not changed after Resolve
	blob  *store.Blob // complete on disk
	fill  *fill       // being filled; nil with blob == nil means pass-through
	owner []Peer      // the blob lives on these nodes, best first: proxy to them
}

// Open returns the content of a resolved file. A blob on this node's disk
// is served from it, wherever the ring puts it. Otherwise the blob's owner
// serves it (the Content is Remote), or, when this node is the owner, the
// node's single fill for it starts or is joined.
func (n *Node) Open(ctx context.Context, f *File) (*Content, error) {
	if n.cluster == nil {
		return n.OpenLocal(ctx, f, false)
	}
	if b, err := n.store.Open(f.Blob); err == nil {
		if n.cluster.Owns(f.ringKey()) {
			n.hot.served.record(f, n.cfg.Now())
		}
		return &Content{Size: f.Size, Source: SourceDisk, n: n, f: f, blob: b}, nil
	}
	route := n.cluster.Route(f.ringKey(), 3)
	if route[0].Name == n.cluster.Self() {
		return n.OpenLocal(ctx, f, false)
	}
	if n.hot.hit(f.Blob) {
		n.keepHotCopy(f)
	}
	return &Content{Size: f.Size, Source: SourcePeer, n: n, f: f, owner: route}, nil
}

// ErrNotCached is returned by OpenLocal with onlyDisk for a blob this node
// does not hold.
var ErrNotCached = store.ErrNotFound

// Remote reports whether the bytes are on another node (use Proxy).
func (c *Content) Remote() bool { return len(c.owner) > 0 }

// Proxy asks the blob's owner for the bytes, forwarding the caller's Range
// and conditional headers; the owner answers exactly as it would a client.
// If no owner can be reached this node serves the blob itself: the
// returned response is nil and the Content has become local.
func (c *Content) Proxy(ctx context.Context, hdr http.Header) (*http.Response, error) {
	for _, p := range c.owner {
		if p.Name == c.n.cluster.Self() {
			break
		}
		var resp *http.Response
		var err error
		if c.f.Size >= spliceThreshold {
			resp, err = c.n.peers.blobDirect(ctx, p, c.f, hdr)
		} else {
			resp, err = c.n.peers.blob(ctx, p, c.f, hdr, false)
		}
		if errors.Is(err, errPeerDown) {
			c.n.log.Warn("blob owner unreachable, trying the next node", "peer", p.Name, "blob", c.f.Blob, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 500 && resp.Header.Get(hf.HeaderErrorCode) == "" {
			resp.Body.Close()
			continue
		}
		return resp, nil
	}
	local, err := c.n.OpenLocal(ctx, c.f, false)
	if err != nil {
		return nil, err
	}
	*c = *local
	return nil, nil
}

// OpenLocal returns the content from this node: its disk, or its fill
// (which copies from a peer that holds the blob before asking the Hub).
// With onlyDisk, a blob not on disk is ErrNotFound-wrapped store.ErrNotFound.
func (n *Node) OpenLocal(ctx context.Context, f *File, onlyDisk bool) (*Content, error) {
	c := &Content{Size: f.Size, n: n, f: f}
	n.hot.served.record(f, n.cfg.Now())
	if onlyDisk {
		b, err := n.store.Open(f.Blob)
		if err != nil {
			return nil, err
		}
		c.blob, c.Source = b, SourceDisk
		return c, nil
	}
	if f.remote.Policy == PolicyStreamed {
		// Pass-through remote: serve from disk if the blob happens to be
		// there (another remote stored it), never store it.
		if b, err := n.store.Open(f.Blob); err == nil {
			c.blob, c.Source = b, SourceDisk
			return c, nil
		}
		c.Source = SourceUpstream
		return c, nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		b, err := n.store.Open(f.Blob)
		if err == nil {
			c.blob, c.Source = b, SourceDisk
			return c, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			n.log.Warn("opening blob", "blob", f.Blob, "err", err)
			break
		}
		fl, err := n.startFill(f)
		if errors.Is(err, store.ErrExists) {
			continue // completed between the two calls
		}
		if errors.Is(err, ErrBusy) {
			return nil, err
		}
		if err != nil {
			// No room (or the store is failing): the client still gets its
			// bytes, straight from the Hub.
			n.log.Warn("not caching blob, passing through", "blob", f.Blob, "size", f.Size, "err", err)
			break
		}
		c.fill, c.Source = fl, SourceUpstream
		return c, nil
	}
	c.Source = SourceUpstream
	return c, nil
}

// CurrentSource is where the bytes come from, as far as known now (a fill
// decides between a peer and the Hub once it starts).
func (c *Content) CurrentSource() string {
	if c.fill != nil {
		return c.fill.Source()
	}
	return c.Source
}

// File returns the complete blob file, if the content is on disk and not
// held in memory (see Bytes).
func (c *Content) File() (*os.File, bool) {
	if c.blob == nil || c.blob.File() == nil {
		return nil, false
	}
	return c.blob.File(), true
}

// Bytes returns the whole content of a small complete blob held in memory.
// The slice is shared and must not be modified.
func (c *Content) Bytes() ([]byte, bool) {
	if c.blob == nil || c.blob.Bytes() == nil {
		return nil, false
	}
	return c.blob.Bytes(), true
}

// ModTime is the blob's modification time (zero while filling).
func (c *Content) ModTime() time.Time {
	if c.blob == nil {
		return time.Time{}
	}
	return c.blob.ModTime()
}

// Close releases the blob or the fill.
func (c *Content) Close() {
	if c.blob != nil {
		c.blob.Close()
	}
	if c.fill != nil {
		c.fill.release()
		c.fill = nil
	}
}

// Reader reads bytes [off, end) of the content. While the blob fills it waits
// for bytes as they arrive; the blob's last byte is held back until the whole
// blob is verified, so a fill that turns out corrupt fails every reader before
// it could see a complete file.
func (c *Content) Reader(ctx context.Context, off, end int64) (io.ReadCloser, error) {
	switch {
	case c.blob != nil:
		return io.NopCloser(io.NewSectionReader(c.blob, off, end-off)), nil
	case c.fill == nil:
		return c.n.upstreamRange(ctx, c.f, off, end)
	}
	r := &fillReader{ctx: ctx, c: c, off: off, end: end}
	if st := c.fill.state(); off > st.written+c.n.cfg.FarRange && st.err == nil && !st.verified {
		// Far ahead of the fill: do not wait for it, ask the Hub for the range.
		up, err := c.n.upstreamRange(ctx, c.f, off, end)
		if err != nil {
			return nil, err
		}
		r.up = up
	}
	return r, nil
}

// upstreamRange streams [off, end) straight from the Hub.
func (n *Node) upstreamRange(ctx context.Context, f *File, off, end int64) (io.ReadCloser, error) {
	if off >= end {
		return io.NopCloser(eofReader{}), nil
	}
	body, err := f.remote.Hub.GetFile(ctx, f.Repo, hf.Revision(f.Commit), f.Path, f.token, f.location, off, end)
	if err != nil {
		return nil, err
	}
	return &limitedBody{Reader: io.LimitReader(body, end-off), c: body}, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type limitedBody struct {
	io.Reader
	c io.Closer
}

func (l *limitedBody) Close() error { return l.c.Close() }

// fillReader reads a range of a blob that is being filled.
type fillReader struct {
	ctx      context.Context
	c        *Content
	off, end int64
	up       io.ReadCloser // set once the reader switched to the Hub
}

func (r *fillReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if int64(len(p)) > r.end-r.off {
		p = p[:r.end-r.off]
	}
	if r.up != nil {
		n, err := r.up.Read(p)
		r.off += int64(n)
		if err == io.EOF && r.off < r.end {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	limit, err := r.next()
	if err != nil {
		return 0, err
	}
	if r.up != nil {
		return r.Read(p)
	}
	if int64(len(p)) > limit-r.off {
		p = p[:limit-r.off]
	}
	n, err := r.c.fill.w.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// next waits until bytes from r.off are readable and returns where they
// end (at most r.end). If the disk refused the fill's writes, it switches
// the reader to the Hub instead: r.up is set and the limit is meaningless.
func (r *fillReader) next() (int64, error) {
	fl := r.c.fill
	for {
		st := fl.state()
		limit := st.written
		if !st.verified && limit == fl.size {
			limit-- // hold back the last byte until the blob is verified
		}
		if r.off < limit {
			return min(limit, r.end), nil
		}
		if st.err != nil {
			return 0, st.err
		}
		if st.storeErr != nil {
			up, err := r.c.n.upstreamRange(r.ctx, r.c.f, r.off, r.end)
			if err != nil {
				return 0, err
			}
			r.up = up
			return 0, nil
		}
		select {
		case <-st.changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// fileReopener is a BlobWriter whose bytes can also be read through a file
// description of their own (store.Fill does): a reader then hands each
// readable stretch of it to the destination's ReadFrom, and a socket sends
// it with sendfile instead of a copy through user space.
type fileReopener interface {
	Reopen() (*os.File, error)
}

// WriteTo sends the range to w as it becomes readable. With a destination
// that takes a file (a connection's ReadFrom), the bytes go from the fill's
// file to the socket by sendfile; otherwise they are copied through a
// buffer.
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	ro, ok2 := r.c.fill.w.(fileReopener)
	if !ok || !ok2 || r.up != nil {
		return r.copyTo(w)
	}
	f, err := ro.Reopen()
	if err != nil {
		return r.copyTo(w)
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return r.copyTo(w)
	}
	var total int64
	for r.off < r.end {
		limit, err := r.next()
		if err != nil {
			return total, err
		}
		if r.up != nil {
			n, err := r.copyTo(w)
			return total + n, err
		}
		n, err := rf.ReadFrom(&io.LimitedReader{R: f, N: limit - r.off})
		r.off += n
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrUnexpectedEOF
		}
	}
	return total, nil
}

// copyTo is WriteTo through a buffer.
func (r *fillReader) copyTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, make([]byte, 256<<10))
}

func (r *fillReader) Close() error {
	if r.up != nil {
		return r.up.Close()
	}
	return nil
}

// IsUnreachable reports whether err means the Hub could not be reached.
func IsUnreachable(err error) bool { return errors.Is(err, hubclient.ErrUnreachable) }
