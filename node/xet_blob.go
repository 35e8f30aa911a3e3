package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hfcache/hfcache/hubclient/xet"
)

// copyFromXet fills a Xet-backed file's blob from the Xet chunks the
// cluster holds, when every chunk of the file is there and verified: a
// client without Xet then gets the file without a second download of its
// bytes. The blob is checked against its sha256 at commit like any fill.
// Whatever it could not assemble is left for the Hub; it returns an error
// only when the store fails.
func (n *Node) copyFromXet(fl *fill, f *File, buf []byte) error {
	if f.XetHash == "" || fl.state().written != 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Hour)
	defer cancel()
	token, g := n.fileGrant(f)
	rec, held, ok := n.xetHeld(ctx, token, g, f.XetHash)
	if !ok || int64(xet.FileSize(rec.Terms)) != fl.size {
		return nil
	}
	fl.mu.Lock()
	fl.source = SourceXet
	fl.mu.Unlock()
	rd := &xetFileReader{n: n, ctx: ctx, token: token, file: f.XetHash, terms: rec.Terms, held: held}
	defer rd.Close()
	_, err := copyBody(fl, rd, buf, 0, 0)
	var diskErr *diskError
	if errors.As(err, &diskErr) {
		return err
	}
	if err != nil {
		n.log.Warn("assembling from Xet chunks broke, continuing from the Hub", "blob", fl.id, "err", err)
	} else {
		n.log.Info("blob assembled from Xet chunks", "blob", fl.id, "xet_hash", f.XetHash, "bytes", fl.size)
	}
	return nil
}

// fileGrant is a grant for a resolved file's repository, on the upstream
// token the file was resolved with: the node's own, for its fills.
func (n *Node) fileGrant(f *File) (string, xetGrant) {
	g := xetGrant{Remote: f.remote.Name, Type: f.Repo.Type, ID: f.Repo.ID, Rev: f.Commit, Token: f.token,
		Exp: n.cfg.Now().Add(time.Hour).Unix()}
	return n.xet.seal(g), g
}

// xetHeld reports whether the cluster holds every chunk of a Xet file,
// verified, with the file's record and the chunks its xorbs' owners hold.
// Nothing is fetched upstream.
func (n *Node) xetHeld(ctx context.Context, token string, g xetGrant, hash string) (*xetRecord, map[string]map[uint32]XorbChunkInfo, bool) {
	rec, ok := n.peekXetRecord(ctx, token, g, hash)
	if !ok {
		return nil, nil, false
	}
	held := make(map[string]map[uint32]XorbChunkInfo, len(rec.Xorbs))
	for xorb, ranges := range rec.Xorbs {
		req := PeerXorbOp{Op: xorbList, Remote: g.Remote, Xorb: xorb}
		for _, r := range ranges {
			req.Ranges = append(req.Ranges, XorbFillRange{Chunks: r.Chunks, Bytes: r.Bytes})
		}
		res, err := n.xorbOp(ctx, req)
		if err != nil {
			return nil, nil, false
		}
		m := make(map[uint32]XorbChunkInfo, len(res.Chunks))
		for _, c := range res.Chunks {
			m[c.Index] = c
		}
		held[xorb] = m
	}
	for _, t := range rec.Terms {
		for i := t.Range.Start; i < t.Range.End; i++ {
			if c, ok := held[t.Hash][i]; !ok || !c.Verified {
				return nil, nil, false
			}
		}
	}
	return rec, held, true
}

// xetFileReader reads a file's bytes from its terms: each term's chunks
// from its xorb's owner (or this node), decoded.
type xetFileReader struct {
	n     *Node
	ctx   context.Context
	token string
	file  string
	terms []xet.Term
	held  map[string]map[uint32]XorbChunkInfo

	term  int
	body  io.ReadCloser // the current term's xorb bytes
	next  uint32        // chunk index the next header in body belongs to
	out   []byte        // decoded bytes not yet returned
	chunk []byte
}

func (r *xetFileReader) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	return nil
}

func (r *xetFileReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.body == nil {
			if r.term == len(r.terms) {
				return 0, io.EOF
			}
			if err := r.open(r.terms[r.term]); err != nil {
				return 0, err
			}
		}
		t := r.terms[r.term]
		if r.next == t.Range.End {
			r.Close()
			r.term++
			continue
		}
		var hdr [xet.HeaderSize]byte
		if _, err := io.ReadFull(r.body, hdr[:]); err != nil {
			return 0, fmt.Errorf("%w: xorb %s chunk %d: %v", ErrFillFailed, t.Hash, r.next, err)
		}
		h, err := xet.ParseHeader(hdr[:])
		if err != nil {
			return 0, fmt.Errorf("%w: xorb %s chunk %d: %v", ErrFillFailed, t.Hash, r.next, err)
		}
		if cap(r.chunk) < int(h.CompressedLen) {
			r.chunk = make([]byte, h.CompressedLen)
		}
		payload := r.chunk[:h.CompressedLen]
		if _, err := io.ReadFull(r.body, payload); err != nil {
			return 0, fmt.Errorf("%w: xorb %s chunk %d: %v", ErrFillFailed, t.Hash, r.next, err)
		}
		if r.out, err = xet.DecodeChunkTo(r.out[:0], h, payload); err != nil {
			return 0, fmt.Errorf("%w: xorb %s chunk %d: %v", ErrFillFailed, t.Hash, r.next, err)
		}
		r.next++
	}
	k := copy(p, r.out)
	r.out = r.out[k:]
	return k, nil
}

// open starts reading a term's chunks, through a xorb URL signed for the
// term's bytes: served like a client's, by the xorb's owner.
func (r *xetFileReader) open(t xet.Term) error {
	first, last := r.held[t.Hash][t.Range.Start], r.held[t.Hash][t.Range.End-1]
	a, z := first.Offset, last.Offset+uint64(last.Len)-1
	b := strconv.FormatUint(a, 10) + "-" + strconv.FormatUint(z, 10)
	exp := strconv.FormatInt(r.n.cfg.Now().Add(time.Hour).Unix(), 10)
	q := url.Values{"f": {r.file}, "b": {b}, "x": {exp}, "t": {r.token}}
	q.Set("s", r.n.xet.sign(t.Hash, r.file, b, exp, r.token))
	xc, err := r.n.OpenXorb(r.ctx, t.Hash, q)
	if err != nil {
		return err
	}
	if xc.Remote() {
		resp, err := xc.Proxy(r.ctx, http.Header{"Range": {"bytes=" + b}})
		if err != nil {
			return err
		}
		if resp != nil {
			if resp.StatusCode != http.StatusPartialContent {
				resp.Body.Close()
				return fmt.Errorf("%w: xorb %s from its owner: %d", ErrFillFailed, t.Hash, resp.StatusCode)
			}
			r.body, r.next = resp.Body, t.Range.Start
			return nil
		}
	}
	r.body, r.next = xc.Reader(r.ctx, a, z), t.Range.Start
	return nil
}
