package node

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// Where a response's bytes come from (X-Hfcache-Source).
const (
	SourceDisk     = "disk"
	SourceUpstream = "upstream"
)

// Content is a file's bytes, ready to serve: either a complete blob on disk
// (serve File with http.ServeContent: ranges, conditionals and sendfile come
// free) or a blob being filled, read through Reader as bytes arrive.
type Content struct {
	Size   int64
	Source string

	n    *Node
	f    File
	blob *store.Blob // complete on disk
	fill *fill       // being filled; nil with blob == nil means pass-through
}

// Open returns the content of a resolved file. A blob that is not on disk
// starts (or joins) the node's single fill for it.
func (n *Node) Open(ctx context.Context, f *File) (*Content, error) {
	c := &Content{Size: f.Size, n: n, f: *f}
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

// File returns the complete blob file, if the content is on disk.
func (c *Content) File() (*os.File, bool) {
	if c.blob == nil {
		return nil, false
	}
	return c.blob.File(), true
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
		return io.NopCloser(io.NewSectionReader(c.blob.File(), off, end-off)), nil
	case c.fill == nil:
		return c.n.upstreamRange(ctx, &c.f, off, end)
	}
	r := &fillReader{ctx: ctx, c: c, off: off, end: end}
	if st := c.fill.state(); off > st.written+c.n.cfg.FarRange && st.err == nil && !st.verified {
		// Far ahead of the fill: do not wait for it, ask the Hub for the range.
		up, err := c.n.upstreamRange(ctx, &c.f, off, end)
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
	body, err := n.hub.GetFile(ctx, f.Repo, hf.Revision(f.Commit), f.Path, f.token, f.location, off, end)
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
	fl := r.c.fill
	for {
		st := fl.state()
		limit := st.written
		if !st.verified && limit == fl.size {
			limit-- // hold back the last byte until the blob is verified
		}
		if r.off < limit {
			if int64(len(p)) > limit-r.off {
				p = p[:limit-r.off]
			}
			n, err := fl.w.ReadAt(p, r.off)
			r.off += int64(n)
			if err == io.EOF && n > 0 {
				err = nil
			}
			return n, err
		}
		if st.err != nil {
			return 0, st.err
		}
		if st.storeErr != nil {
			up, err := r.c.n.upstreamRange(r.ctx, &r.c.f, r.off, r.end)
			if err != nil {
				return 0, err
			}
			r.up = up
			return r.Read(p)
		}
		select {
		case <-st.changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *fillReader) Close() error {
	if r.up != nil {
		return r.up.Close()
	}
	return nil
}

// IsUnreachable reports whether err means the Hub could not be reached.
func IsUnreachable(err error) bool { return errors.Is(err, hubclient.ErrUnreachable) }
