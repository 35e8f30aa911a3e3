package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"golang.org/x/sync/errgroup"
)

// errSequential means the upstream ignores Range: fill with one stream.
var errSequential = errors.New("node: upstream serves one stream only")

// copyParallel fills a large blob with several ranged upstream requests at
// once, chunk by chunk in order, writing at offsets. Readers still see the
// contiguous prefix grow (fill.advanceChunk), so streaming starts at once;
// the store verifies the whole blob however the bytes arrived.
func (n *Node) copyParallel(fl *fill, f *File, streams int, chunk int64) error {
	chunks := int((fl.size + chunk - 1) / chunk)
	fl.mu.Lock()
	fl.chunk, fl.chunkDone = chunk, make([]int64, chunks)
	fl.mu.Unlock()
	var next atomic.Int64
	g, ctx := errgroup.WithContext(n.ctx)
	for w := 0; w < min(streams, chunks); w++ {
		g.Go(func() error {
			buf := make([]byte, 256<<10)
			for {
				i := int(next.Add(1) - 1)
				if i >= chunks {
					return nil
				}
				if err := n.fetchChunk(ctx, fl, f, i, buf); err != nil {
					return err
				}
			}
		})
	}
	err := g.Wait()
	if err != nil {
		// Whatever was written stays; the sequential stream continues from
		// the contiguous prefix (rewriting bytes with the same bytes is fine).
		fl.mu.Lock()
		fl.chunkDone = nil
		fl.mu.Unlock()
	}
	return err
}

// fetchChunk copies chunk i, resuming within it after a broken stream.
func (n *Node) fetchChunk(ctx context.Context, fl *fill, f *File, i int, buf []byte) error {
	start := int64(i) * fl.chunk
	end := min(start+fl.chunk, fl.size)
	failures := 0
	for {
		off := start + fl.chunkProgress(i)
		if off == end {
			return nil
		}
		body, err := f.remote.Hub.GetFile(ctx, f.Repo, hf.Revision(f.Commit), f.Path, f.token, f.location, off, end)
		if errors.Is(err, hubclient.ErrRangeIgnored) {
			return errSequential
		}
		if err == nil && body.Status != 206 && (off > 0 || end < fl.size) {
			body.Close()
			return errSequential
		}
		if err == nil {
			err = n.copyChunk(fl, i, body, buf, off, end)
			body.Close()
			if err == nil {
				continue
			}
		}
		var diskErr *diskError
		if errors.As(err, &diskErr) || errors.Is(err, hubclient.ErrBadResponse) || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if failures++; failures > n.cfg.FillRetries {
			return err
		}
		if err := n.backoff(failures, err); err != nil {
			return err
		}
	}
}

// copyChunk writes a ranged body into chunk i from off.
func (n *Node) copyChunk(fl *fill, i int, body io.Reader, buf []byte, off, end int64) error {
	for off < end {
		want := min(int64(len(buf)), end-off)
		nr, rerr := body.Read(buf[:want])
		if nr > 0 {
			if _, err := fl.w.WriteAt(buf[:nr], off); err != nil {
				return &diskError{err}
			}
			off += int64(nr)
			fl.advanceChunk(i, int64(nr))
		}
		if rerr == io.EOF {
			if off < end {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
	// The range is complete; more bytes would be a protocol error.
	if nr, _ := body.Read(buf[:1]); nr > 0 {
		return fmt.Errorf("%w: upstream sent more than the range asked", hubclient.ErrBadResponse)
	}
	return nil
}

// chunkProgress is how many bytes of chunk i are written.
func (fl *fill) chunkProgress(i int) int64 {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.chunkDone[i]
}

// advanceChunk records n more bytes of chunk i and moves the contiguous
// prefix readers may read. Readers are woken only when the prefix moved:
// seven of the eight streams write past it.
func (fl *fill) advanceChunk(i int, n int64) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.chunkDone[i] += n
	w := fl.written
	for j := int(w / fl.chunk); j < len(fl.chunkDone); j++ {
		start := int64(j) * fl.chunk
		w = start + fl.chunkDone[j]
		if w < min(start+fl.chunk, fl.size) {
			break
		}
	}
	if w != fl.written {
		fl.written = w
		fl.wakeLocked()
	}
}
