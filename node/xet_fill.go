package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/xet"
	"github.com/hfcache/hfcache/node/store"
	"golang.org/x/sync/errgroup"
)

// How Xet chunks are filled, on the ring:
//
//   - A file's owner (ring key xetFileKey) coordinates: it holds the
//     upstream's signed URLs, asks each xorb's owner to fill the file's
//     ranges of that xorb, collects the chunk hashes they computed, checks
//     the file hash, and tells the owners to mark the chunks verified — or
//     to drop the unverified ones when the hash does not match.
//   - A xorb's owner (ring key xorbKey) fetches only the chunks it does not
//     hold, one fill per xorb at a time (a second fill waits and finds the
//     chunks there), checks each chunk's framing and decompressed length,
//     hashes it, and stores it, waking readers batch by batch.
//   - A reader of a xorb range streams chunks as they land and holds back
//     the response's last byte until every chunk it sent is verified: a
//     client never holds a complete-looking response with unverified bytes.

// xorbState serializes fills of one xorb on its owner and wakes readers
// when its chunks change.
type xorbState struct {
	fill sync.Mutex // held while fetching from upstream

	mu   sync.Mutex
	wake chan struct{}
}

func (x *xetState) xorb(h string) *xorbState {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.xorbs[h]
	if s == nil {
		if len(x.xorbs) >= maxHeld {
			// Forget idle xorbs. A reader still waiting on a forgotten one
			// misses its wake-up and looks again after its timer (wait).
			for k, v := range x.xorbs {
				if v.fill.TryLock() {
					v.fill.Unlock()
					delete(x.xorbs, k)
				}
			}
		}
		s = &xorbState{wake: make(chan struct{})}
		x.xorbs[h] = s
	}
	return s
}

func (s *xorbState) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

func (s *xorbState) notify() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// Operations on a xorb's owner.
const (
	xorbFill   = "fill"
	xorbVerify = "verify"
	xorbDrop   = "drop"
	xorbList   = "list"
)

// PeerXorbOp asks a xorb's owner to fill, verify or drop chunk ranges.
type PeerXorbOp struct {
	Op     string          `json:"op"`
	Remote string          `json:"remote"`
	Xorb   string          `json:"xorb"`
	Ranges []XorbFillRange `json:"ranges"`
}

// XorbFillRange is a range of a xorb's chunks with its byte range in the
// xorb and, for a fill, the upstream URL that may read it.
type XorbFillRange struct {
	Chunks xet.ChunkRange `json:"chunks"`
	Bytes  xet.ByteRange  `json:"bytes"`
	URL    string         `json:"url,omitempty"`
}

// PeerXorbChunks is a xorb owner's answer: the chunks of the requested
// ranges it holds.
type PeerXorbChunks struct {
	Chunks []XorbChunkInfo `json:"chunks"`
}

// XorbChunkInfo is what a file's owner needs of a chunk to check the file.
type XorbChunkInfo struct {
	Index    uint32 `json:"i"`
	Hash     string `json:"h"`
	RawLen   uint32 `json:"n"`
	Offset   uint64 `json:"o"`
	Len      uint32 `json:"l"`
	Verified bool   `json:"v,omitempty"`
}

// errXetNeedURL: a fill needs upstream bytes and the URL it was given is
// missing or expired; the file's owner fetches fresh URLs and asks again.
var errXetNeedURL = xetError(http.StatusConflict, "XetUpstreamURLExpired", "the upstream xorb URL expired")

func isNeedURL(err error) bool {
	var he *hubclient.Error
	return errors.As(err, &he) && he.Code == errXetNeedURL.Code
}

// errXetVerify: a file's chunks do not hash to its Xet hash.
var errXetVerify = fmt.Errorf("%w: Xet chunks do not match the file hash", ErrFillFailed)

// ensureXetFile makes every chunk of the file present and verified on its
// xorb's owner, through the file's owner (one coordinator for the cluster).
func (n *Node) ensureXetFile(ctx context.Context, token string, g xetGrant, hash string) error {
	if n.cluster != nil {
		var out struct{}
		local, err := n.viaPeers(ctx, n.cluster.Preference(xetFileKey(hash), 3), PeerXetEnsurePath, PeerXetRequest{Token: token, Hash: hash}, &out)
		if !local {
			return err
		}
	}
	return n.ensureXetFileLocal(ctx, g, hash)
}

// XetEnsurePeer answers a peer's PeerXetEnsurePath request as the file's owner.
func (n *Node) XetEnsurePeer(ctx context.Context, req PeerXetRequest) (any, error) {
	g, err := n.xet.open(req.Token, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	return struct{}{}, n.ensureXetFileLocal(ctx, g, req.Hash)
}

func (n *Node) ensureXetFileLocal(ctx context.Context, g xetGrant, hash string) error {
	ch := n.xet.group.DoChan("ensure\x00"+hash, func() (any, error) {
		// The fill is the cluster's, not the first caller's: it outlives
		// the request that started it, and ends with the node.
		fctx, cancel := context.WithTimeout(n.ctx, time.Hour)
		defer cancel()
		err := n.fillXetFile(fctx, g, hash)
		n.metrics.xetFileChecked(err)
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fillXetFile is the coordinator's work for one file.
func (n *Node) fillXetFile(ctx context.Context, g xetGrant, hash string) error {
	rec, err := n.xetRecordLocal(ctx, g, hash)
	if err != nil {
		return err
	}
	urls := n.xet.heldURLs(hash, n.cfg.Now())
	chunks, err := n.fillXorbs(ctx, g.Remote, rec, urls, xorbFill)
	if isNeedURL(err) {
		// No URLs held, or the upstream refused them: ask once for fresh ones.
		if urls, err = n.freshURLs(ctx, g, hash); err != nil {
			return err
		}
		chunks, err = n.fillXorbs(ctx, g.Remote, rec, urls, xorbFill)
	}
	if err != nil {
		return err
	}
	var leaves []xet.Chunk
	for _, t := range rec.Terms {
		var sum uint64
		for i := t.Range.Start; i < t.Range.End; i++ {
			c, ok := chunks[t.Hash][i]
			if !ok {
				return fmt.Errorf("%w: chunk %d of xorb %s missing after its fill", ErrFillFailed, i, t.Hash)
			}
			leaves = append(leaves, c)
			sum += c.Size
		}
		if sum != t.UnpackedLength {
			return n.rejectXetFile(ctx, g.Remote, rec, fmt.Errorf("%w: term of xorb %s holds %d bytes, not %d", errXetVerify, t.Hash, sum, t.UnpackedLength))
		}
	}
	if got := xet.FileHash(leaves).String(); got != hash {
		return n.rejectXetFile(ctx, g.Remote, rec, fmt.Errorf("%w: chunks hash to %s, not %s", errXetVerify, got, hash))
	}
	_, err = n.fillXorbs(ctx, g.Remote, rec, nil, xorbVerify)
	return err
}

// rejectXetFile drops the file's unverified chunks and returns err.
func (n *Node) rejectXetFile(ctx context.Context, remote string, rec *xetRecord, err error) error {
	n.log.Error("Xet file failed verification; dropping its unverified chunks", "xet_hash", rec.Hash, "err", err)
	n.activity.failed(RecentError{At: n.cfg.Now(), Kind: "fill", Path: "xet:" + rec.Hash, Detail: err.Error()})
	if _, derr := n.fillXorbs(ctx, remote, rec, nil, xorbDrop); derr != nil {
		n.log.Warn("dropping unverified chunks", "xet_hash", rec.Hash, "err", derr)
	}
	return err
}

// fillXorbs runs op on every xorb of the file, on the xorbs' owners, and
// collects the chunks they report.
func (n *Node) fillXorbs(ctx context.Context, remote string, rec *xetRecord, urls map[string][]xet.XorbFetch, op string) (map[string]map[uint32]xet.Chunk, error) {
	var mu sync.Mutex
	out := make(map[string]map[uint32]xet.Chunk, len(rec.Xorbs))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	// In file order: clients read terms in order, and a xorb is released
	// to them as soon as it is whole (verifyWholeXorb).
	var order []string
	seen := make(map[string]bool, len(rec.Xorbs))
	for _, t := range rec.Terms {
		if !seen[t.Hash] {
			seen[t.Hash] = true
			order = append(order, t.Hash)
		}
	}
	for _, xorb := range order {
		ranges := rec.Xorbs[xorb]
		req := PeerXorbOp{Op: op, Remote: remote, Xorb: xorb}
		for _, r := range ranges {
			fr := XorbFillRange{Chunks: r.Chunks, Bytes: r.Bytes}
			if op == xorbFill {
				fr.URL = upstreamURLFor(urls[xorb], r.Chunks)
			}
			req.Ranges = append(req.Ranges, fr)
		}
		eg.Go(func() error {
			res, err := n.xorbOp(ectx, req)
			if err != nil {
				return err
			}
			m := make(map[uint32]xet.Chunk, len(res.Chunks))
			for _, c := range res.Chunks {
				h, err := xet.ParseHash(c.Hash)
				if err != nil {
					return fmt.Errorf("%w: chunk hash %q from xorb owner", ErrFillFailed, c.Hash)
				}
				m[c.Index] = xet.Chunk{Hash: h, Size: uint64(c.RawLen)}
			}
			mu.Lock()
			out[xorb] = m
			mu.Unlock()
			return nil
		})
	}
	return out, eg.Wait()
}

// upstreamURLFor is the upstream URL whose signed ranges cover chunks.
func upstreamURLFor(entries []xet.XorbFetch, chunks xet.ChunkRange) string {
	for _, e := range entries {
		for _, r := range e.Ranges {
			if r.Chunks.Start <= chunks.Start && chunks.End <= r.Chunks.End {
				return e.URL
			}
		}
	}
	return ""
}

// xorbOp runs op on the xorb's owner.
func (n *Node) xorbOp(ctx context.Context, req PeerXorbOp) (*PeerXorbChunks, error) {
	if n.cluster != nil {
		var out PeerXorbChunks
		local, err := n.viaPeers(ctx, n.cluster.Preference(xorbKey(req.Xorb), 3), PeerXetXorbOpPath, req, &out)
		if !local {
			if err != nil {
				return nil, err
			}
			return &out, nil
		}
	}
	return n.XorbOpLocal(ctx, req)
}

// XorbOpLocal runs a xorb operation as the xorb's owner.
func (n *Node) XorbOpLocal(ctx context.Context, req PeerXorbOp) (*PeerXorbChunks, error) {
	if _, err := xet.ParseHash(req.Xorb); err != nil {
		return nil, fmt.Errorf("%w: xorb hash %q", ErrFillFailed, req.Xorb)
	}
	st := n.xet.xorb(req.Xorb)
	switch req.Op {
	case xorbFill:
		r, err := n.remote(req.Remote)
		if err != nil {
			return nil, err
		}
		st.fill.Lock()
		err = n.fillXorbRanges(ctx, r, req.Xorb, req.Ranges, st)
		if err == nil {
			err = n.verifyWholeXorb(req.Xorb, st)
		}
		st.fill.Unlock()
		if err != nil {
			return nil, err
		}
	case xorbList:
	case xorbVerify, xorbDrop:
		held, err := n.store.XorbChunks(req.Xorb)
		if err != nil {
			return nil, err
		}
		var idx []uint32
		for _, c := range held {
			if inRanges(c.Index, req.Ranges) && !c.Verified {
				idx = append(idx, c.Index)
			}
		}
		if len(idx) > 0 {
			if req.Op == xorbVerify {
				err = n.store.VerifyXorbChunks(req.Xorb, idx)
			} else {
				err = n.store.DropXorbChunks(req.Xorb, idx)
			}
			st.notify()
			if err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: xorb operation %q", ErrFillFailed, req.Op)
	}
	held, err := n.store.XorbChunks(req.Xorb)
	if err != nil {
		return nil, err
	}
	out := &PeerXorbChunks{}
	for _, c := range held {
		if inRanges(c.Index, req.Ranges) {
			out.Chunks = append(out.Chunks, XorbChunkInfo{Index: c.Index, Hash: xet.Hash(c.Hash).String(), RawLen: c.RawLen,
				Offset: c.Offset, Len: c.Len, Verified: c.Verified})
		}
	}
	return out, nil
}

// verifyWholeXorb marks a xorb's chunks verified when the chunks held from
// index 0 on hash to the xorb's own hash: they are then the whole xorb, as
// its author made it. Most terms of a large file read a whole xorb, so its
// readers need not wait for the rest of the file to be filled and checked
// (a file's hash needs all its chunks). Chunks that are only part of their
// xorb wait for their file's check.
func (n *Node) verifyWholeXorb(xorb string, st *xorbState) error {
	held, err := n.store.XorbChunks(xorb)
	if err != nil {
		return err
	}
	var leaves []xet.Chunk
	var idx []uint32
	pending := false
	for i, c := range held {
		if c.Index != uint32(i) {
			break
		}
		leaves = append(leaves, xet.Chunk{Hash: c.Hash, Size: uint64(c.RawLen)})
		idx = append(idx, c.Index)
		pending = pending || !c.Verified
	}
	if !pending || len(leaves) == 0 || xet.XorbHash(leaves).String() != xorb {
		return nil
	}
	err = n.store.VerifyXorbChunks(xorb, idx)
	st.notify()
	return err
}

func inRanges(i uint32, rs []XorbFillRange) bool {
	for _, r := range rs {
		if r.Chunks.Start <= i && i < r.Chunks.End {
			return true
		}
	}
	return false
}

// fillXorbRanges fetches, as the xorb's owner, the chunks of ranges it does
// not hold: one ranged upstream request per run of missing chunks, whose
// byte bounds come from the range's own bounds or the neighbouring chunks
// held. An upstream that refuses part of a signed range gets the whole
// range asked for instead (chunks already held are not stored twice).
func (n *Node) fillXorbRanges(ctx context.Context, r *Remote, xorb string, ranges []XorbFillRange, st *xorbState) error {
	for _, fr := range ranges {
		if fr.Chunks.End <= fr.Chunks.Start || fr.Bytes.End < fr.Bytes.Start {
			return fmt.Errorf("%w: fill range %+v", ErrFillFailed, fr)
		}
		whole := false
		for attempt := 0; ; attempt++ {
			held, err := n.store.XorbChunks(xorb)
			if err != nil {
				return err
			}
			byIndex := make(map[uint32]store.XorbChunk, len(held))
			for _, c := range held {
				byIndex[c.Index] = c
			}
			run, ok := firstMissingRun(fr, byIndex)
			if !ok {
				break
			}
			if !whole && n.copyXorbRun(ctx, xorb, run, st) {
				continue
			}
			if fr.URL == "" {
				return errXetNeedURL
			}
			if whole {
				run = xorbRun{chunks: fr.Chunks, bytes: fr.Bytes}
			}
			err = n.fetchXorbRun(ctx, r, xorb, fr.URL, run, st)
			if err == nil {
				continue
			}
			var he *hubclient.Error
			if errors.As(err, &he) && (he.Status == http.StatusForbidden || he.Status == http.StatusUnauthorized) {
				if !whole && run.chunks != fr.Chunks {
					n.log.Info("upstream refused part of a signed xorb range; asking for the whole range", "xorb", xorb)
					whole = true
					continue
				}
				return errXetNeedURL
			}
			if attempt >= n.cfg.FillRetries || !retryable(err) {
				return err
			}
			if berr := n.backoff(attempt, err); berr != nil {
				return berr
			}
		}
	}
	return nil
}

// xorbRun is a run of missing chunks and its byte range in the xorb.
type xorbRun struct {
	chunks xet.ChunkRange
	bytes  xet.ByteRange
}

func firstMissingRun(fr XorbFillRange, held map[uint32]store.XorbChunk) (xorbRun, bool) {
	i := fr.Chunks.Start
	for i < fr.Chunks.End {
		if _, ok := held[i]; !ok {
			break
		}
		i++
	}
	if i == fr.Chunks.End {
		return xorbRun{}, false
	}
	j := i
	for j < fr.Chunks.End {
		if _, ok := held[j]; ok {
			break
		}
		j++
	}
	run := xorbRun{chunks: xet.ChunkRange{Start: i, End: j}, bytes: fr.Bytes}
	if i > fr.Chunks.Start {
		p := held[i-1]
		run.bytes.Start = p.Offset + uint64(p.Len)
	}
	if j < fr.Chunks.End {
		run.bytes.End = held[j].Offset - 1
	}
	return run, true
}

// xorbBatch is how many bytes of chunks are stored (and readers woken) at
// a time during a fill: each batch costs an fsync and a bolt transaction.
const xorbBatch = 4 << 20

// fetchXorbRun reads a run of chunks from upstream, checking each chunk's
// framing and decompressed length and hashing it, and stores them in
// batches. A stream that breaks keeps what was stored; the caller asks
// again for the rest.
func (n *Node) fetchXorbRun(ctx context.Context, r *Remote, xorb, url string, run xorbRun, st *xorbState) error {
	if run.bytes.End < run.bytes.Start {
		return fmt.Errorf("%w: xorb %s chunks %d-%d have no bytes", ErrFillFailed, xorb, run.chunks.Start, run.chunks.End)
	}
	resp, err := r.Hub.Fetch(ctx, url, http.Header{"Range": {"bytes=" + strconv.FormatUint(run.bytes.Start, 10) + "-" + strconv.FormatUint(run.bytes.End, 10)}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent && !(resp.StatusCode == http.StatusOK && run.bytes.Start == 0) {
		return fmt.Errorf("%w: xorb range answered %d", hubclient.ErrBadResponse, resp.StatusCode)
	}
	return n.storeXorbRun(xorb, resp.Body, run, false, st)
}

// storeXorbRun reads a run's serialized chunks from body, checks each
// chunk's framing and decompressed length, hashes it and stores the chunks
// in batches, waking readers after each. verified marks chunks a peer
// served as verified. A stream that breaks keeps what was stored.
func (n *Node) storeXorbRun(xorb string, r io.Reader, run xorbRun, verified bool, st *xorbState) error {
	want := run.bytes.End - run.bytes.Start + 1
	body := io.LimitReader(r, int64(want))
	var (
		buf     = make([]byte, 1<<20)
		n0      int // bytes of buf holding data
		batch   []store.XorbChunk
		data    [][]byte
		pending int
		off     = run.bytes.Start
		idx     = run.chunks.Start
		read    uint64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := n.store.PutXorbChunks(xorb, batch, data)
		if err == nil && !verified {
			n.metrics.xetChunksFilled(pending)
		}
		batch, data, pending = nil, nil, 0
		st.notify()
		return err
	}
	for {
		if n0 == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf)
			buf = nb
		}
		k, rerr := body.Read(buf[n0:])
		n0 += k
		read += uint64(k)
		// Take every complete chunk at the front of buf.
		p := 0
		for n0-p >= xet.HeaderSize {
			h, err := xet.ParseHeader(buf[p:n0])
			if err != nil {
				return fmt.Errorf("%w: xorb %s chunk %d: %v", hubclient.ErrBadResponse, xorb, idx, err)
			}
			total := xet.HeaderSize + int(h.CompressedLen)
			if n0-p < total {
				break
			}
			if idx >= run.chunks.End {
				return fmt.Errorf("%w: xorb %s sent more than chunks %d-%d", hubclient.ErrBadResponse, xorb, run.chunks.Start, run.chunks.End)
			}
			raw, err := xet.DecodeChunk(h, buf[p+xet.HeaderSize:p+total])
			if err != nil {
				return fmt.Errorf("%w: xorb %s chunk %d: %v", hubclient.ErrBadResponse, xorb, idx, err)
			}
			batch = append(batch, store.XorbChunk{Index: idx, Offset: off, Len: uint32(total), RawLen: h.UncompressedLen, Hash: xet.ChunkHash(raw), Verified: verified})
			data = append(data, append([]byte(nil), buf[p:p+total]...))
			pending += total
			p += total
			off += uint64(total)
			idx++
			if pending >= xorbBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		// Keep the partial chunk at the front (a chunk is at most a few
		// hundred KiB: one small move per read).
		n0 = copy(buf, buf[p:n0])
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return errors.Join(hubclient.ErrUnreachable, rerr)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if n0 > 0 || idx != run.chunks.End || read != want {
		return fmt.Errorf("%w: xorb %s bytes %d-%d held chunks up to %d of %d-%d", hubclient.ErrBadResponse,
			xorb, run.bytes.Start, run.bytes.End, idx, run.chunks.Start, run.chunks.End)
	}
	return nil
}

// copyXorbRun copies a run of chunks from a node that holds them verified
// (an owner of the xorb in an earlier ring, or another node of its
// preference list), as blob fills copy from holders before asking the Hub:
// a node joining the cluster takes over xorbs without fetching them again.
// It reports whether the whole run was copied.
func (n *Node) copyXorbRun(ctx context.Context, xorb string, run xorbRun, st *xorbState) bool {
	if n.cluster == nil {
		return false
	}
	b := strconv.FormatUint(run.bytes.Start, 10) + "-" + strconv.FormatUint(run.bytes.End, 10)
	for _, p := range n.cluster.Holders(xorbKey(xorb), 4) {
		q := n.xet.internalXorbQuery(xorb, b, n.cfg.Now())
		q.Set("xorb", xorb)
		q.Set("local", "1")
		resp, err := n.peers.do(ctx, http.MethodGet, p, PeerXetXorbPath, q, nil, http.Header{"Range": {"bytes=" + b}})
		if err != nil {
			continue
		}
		if resp.StatusCode != http.StatusPartialContent {
			resp.Body.Close()
			continue
		}
		err = n.storeXorbRun(xorb, resp.Body, run, true, st)
		resp.Body.Close()
		if err == nil {
			n.log.Info("xorb chunks copied from a peer", "peer", p.Name, "xorb", xorb, "chunks", run.chunks.End-run.chunks.Start)
			return true
		}
		n.log.Warn("xorb copy from a peer broke", "peer", p.Name, "xorb", xorb, "err", err)
	}
	return false
}
