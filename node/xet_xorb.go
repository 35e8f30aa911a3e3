package node

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// XetXorbPath is the client route of xorb ranges, under a distribution's
// base path; reconstructions point at it.
const XetXorbPath = "/xet/xorb/"

// XorbContent is a signed xorb URL a client asked for: the byte ranges it
// may read, and where they are served from (this node, or the xorb's
// owner).
type XorbContent struct {
	n      *Node
	xorb   string
	file   string
	token  string
	grant  xetGrant
	ranges [][2]uint64 // signed byte ranges, inclusive
	query  url.Values
	owner  []Peer
}

// OpenXorb checks a signed xorb URL (its query) and returns what it grants.
// Its ranges and expiry are the cache's own; the grant inside must still be
// valid.
func (n *Node) OpenXorb(ctx context.Context, xorb string, q url.Values) (*XorbContent, error) {
	if !hf.IsXetHash(xorb) {
		return nil, ErrXetURL
	}
	f, b, x, t, s := q.Get("f"), q.Get("b"), q.Get("x"), q.Get("t"), q.Get("s")
	if !hmac.Equal([]byte(s), []byte(n.xet.sign(xorb, f, b, x, t))) {
		return nil, ErrXetURL
	}
	exp, err := strconv.ParseInt(x, 10, 64)
	if err != nil || n.cfg.Now().Unix() >= exp {
		return nil, ErrXetURL
	}
	g, err := n.xet.open(t, n.cfg.Now())
	if err != nil {
		// The URL outlived the token it was issued under: the client asks
		// for the reconstruction again, with a fresh token.
		return nil, ErrXetURL
	}
	xc := &XorbContent{n: n, xorb: xorb, file: f, token: t, grant: g, query: q}
	for _, part := range strings.Split(b, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		z, err2 := strconv.ParseUint(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || z < a {
			return nil, ErrXetURL
		}
		xc.ranges = append(xc.ranges, [2]uint64{a, z})
	}
	if n.cluster != nil && ctx.Value(peerHopKey{}) == nil {
		for _, p := range n.cluster.Preference(xorbKey(xorb), 3) {
			if p.Name == n.cluster.Self() {
				break
			}
			xc.owner = append(xc.owner, p)
		}
	}
	return xc, nil
}

// peerHopKey marks a context of a request a peer forwarded: it is served
// here, never forwarded again.
type peerHopKey struct{}

// AsPeerHop marks ctx as serving a peer's forwarded request.
func AsPeerHop(ctx context.Context) context.Context {
	return context.WithValue(ctx, peerHopKey{}, true)
}

// Allowed reports whether the inclusive byte range [start, end] lies within
// one of the URL's signed ranges.
func (x *XorbContent) Allowed(start, end uint64) bool {
	for _, r := range x.ranges {
		if r[0] <= start && end <= r[1] {
			return true
		}
	}
	return false
}

// Remote reports whether the xorb's owner is another node.
func (x *XorbContent) Remote() bool { return len(x.owner) > 0 }

// Proxy relays the request to the xorb's owner (the first of its
// preference list that answers); nil, nil when none does and this node
// should serve it itself.
func (x *XorbContent) Proxy(ctx context.Context, hdr http.Header) (*http.Response, error) {
	for _, p := range x.owner {
		h := http.Header{}
		if v := hdr.Get("Range"); v != "" {
			h.Set("Range", v)
		}
		q := url.Values{}
		for k, v := range x.query {
			q[k] = v
		}
		q.Set("xorb", x.xorb)
		resp, err := x.n.peers.do(ctx, http.MethodGet, p, PeerXetXorbPath, q, nil, h)
		if errors.Is(err, errPeerDown) {
			x.n.log.Warn("xorb owner unreachable, trying the next node", "peer", p.Name, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	return nil, nil
}

// Held reports whether this node holds every chunk of the xorb byte
// ranges (inclusive), verified: they are then served from disk alone.
func (x *XorbContent) Held(ranges [][2]uint64) bool {
	cs, err := x.n.store.XorbChunks(x.xorb)
	if err != nil {
		return false
	}
	for _, rg := range ranges {
		if !verifiedCover(cs, rg[0], rg[1]) {
			return false
		}
	}
	return true
}

// Reader streams xorb bytes [start, end] (inclusive) from this node's
// store, waiting for chunks that are being filled and starting the file's
// fill when a chunk is missing. The last byte is held back until every
// chunk of the range is verified; a fill that fails fails the reader.
func (x *XorbContent) Reader(ctx context.Context, start, end uint64) io.ReadCloser {
	return &xorbReader{x: x, ctx: ctx, st: x.n.xet.xorb(x.xorb), pos: start, start: start, end: end}
}

type xorbReader struct {
	x     *XorbContent
	ctx   context.Context
	st    *xorbState
	pos   uint64
	start uint64
	end   uint64

	f      *store.XorbFile
	chunks []store.XorbChunk

	ensure chan error // the file's fill, once started
	done   bool       // ensure reported
	err    error      // what ensure reported
}

func (r *xorbReader) Close() error {
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}

// covering is the chunk of cs (sorted by offset) containing byte off.
func covering(cs []store.XorbChunk, off uint64) (store.XorbChunk, bool) {
	i := sort.Search(len(cs), func(i int) bool { return cs[i].Offset+uint64(cs[i].Len) > off })
	if i < len(cs) && cs[i].Offset <= off {
		return cs[i], true
	}
	return store.XorbChunk{}, false
}

// verifiedCover reports whether chunks of cs cover bytes [start, end] and
// are all verified.
func verifiedCover(cs []store.XorbChunk, start, end uint64) bool {
	for off := start; off <= end; {
		c, ok := covering(cs, off)
		if !ok || !c.Verified {
			return false
		}
		off = c.Offset + uint64(c.Len)
	}
	return true
}

// kick starts the file's fill (once per reader).
func (r *xorbReader) kick() {
	if r.ensure != nil {
		return
	}
	r.ensure = make(chan error, 1)
	go func() {
		r.ensure <- r.x.n.ensureXetFile(r.ctx, r.x.token, r.x.grant, r.x.file)
	}()
}

// wait blocks until the xorb changes, the fill reports, or ctx ends.
func (r *xorbReader) wait(changed <-chan struct{}) error {
	r.kick()
	var ensure <-chan error
	if !r.done {
		ensure = r.ensure
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-changed:
	case err := <-ensure:
		r.done, r.err = true, err
	case <-t.C:
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	if r.done && r.err != nil {
		return r.err
	}
	return nil
}

func (r *xorbReader) refresh() (<-chan struct{}, error) {
	changed := r.st.changed()
	cs, err := r.x.n.store.XorbChunks(r.x.xorb)
	if err != nil {
		return nil, err
	}
	r.chunks = cs
	return changed, nil
}

func (r *xorbReader) Read(p []byte) (int, error) {
	if r.pos > r.end {
		return 0, io.EOF
	}
	for stalled := 0; ; {
		c, ok := covering(r.chunks, r.pos)
		if !ok {
			changed, err := r.refresh()
			if err != nil {
				return 0, err
			}
			if c, ok = covering(r.chunks, r.pos); !ok {
				if r.done && stalled > 0 {
					return 0, fmt.Errorf("%w: xorb %s byte %d is not held after its file's fill", ErrFillFailed, r.x.xorb, r.pos)
				}
				if r.done {
					stalled++
				}
				if err := r.wait(changed); err != nil {
					return 0, err
				}
				continue
			}
		}
		n := min(uint64(len(p)), c.Offset+uint64(c.Len)-r.pos, r.end+1-r.pos)
		if r.pos+n > r.end && !verifiedCover(r.chunks, r.start, r.end) {
			// The response's last byte waits for verification.
			if n > 1 {
				n--
			} else {
				changed, err := r.refresh()
				if err != nil {
					return 0, err
				}
				if !verifiedCover(r.chunks, r.start, r.end) {
					if r.done && r.err == nil && stalled > 0 {
						return 0, fmt.Errorf("%w: xorb %s bytes %d-%d unverified after its file's fill", ErrFillFailed, r.x.xorb, r.start, r.end)
					}
					if r.done {
						stalled++
					}
					if err := r.wait(changed); err != nil {
						return 0, err
					}
					continue
				}
			}
		}
		if r.f == nil {
			f, err := r.x.n.store.OpenXorb(r.x.xorb)
			if err != nil {
				return 0, err
			}
			r.f = f
		}
		k, err := r.f.ReadAt(p[:n], int64(r.pos))
		r.pos += uint64(k)
		if err == io.EOF && k > 0 {
			err = nil
		}
		return k, err
	}
}
