package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/hubclient/xet"
)

// bucketXet holds a xetRecord per file hash.
const bucketXet = "xet"

// xetRecord is what the cache keeps of a Xet file: its reconstruction
// without the upstream's signed URLs (immutable for a file hash), and the
// repositories the Hub confirmed it for. A caller is served a cached
// reconstruction only under a grant for one of those repositories; any
// other asks the Hub, whose answer decides.
type xetRecord struct {
	Hash  string     `json:"hash"`
	Terms []xet.Term `json:"terms"`
	// Xorbs lists, per xorb, the chunk ranges the file uses with their byte
	// ranges in the xorb (the upstream's coordinates, which the cache keeps
	// for its own URLs).
	Xorbs  map[string][]xet.XorbRange `json:"xorbs"`
	Scopes []string                   `json:"scopes"`
}

// upstreamRecon is the upstream CAS's signed URLs for a file's xorb
// ranges, valid about an hour; kept in memory by the file's owner only.
type upstreamRecon struct {
	at    time.Time
	xorbs map[string][]xet.XorbFetch
}

// upstreamURLTTL is how long the upstream's signed xorb URLs are reused.
const upstreamURLTTL = 30 * time.Minute

// maxHeld bounds the in-memory maps of upstream URLs and xorb states.
const maxHeld = 100_000

// keepURLs remembers a file's upstream URLs, forgetting stale ones when
// the map is full.
func (x *xetState) keepURLs(hash string, u *upstreamRecon, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.urls) >= maxHeld {
		for k, v := range x.urls {
			if now.Sub(v.at) >= upstreamURLTTL {
				delete(x.urls, k)
			}
		}
	}
	x.urls[hash] = u
}

func grantScope(g xetGrant) string { return g.Remote + "\x00" + string(g.Type) + "/" + g.ID }

// xetFileKey is the ring key of a Xet file: its owner keeps the
// reconstruction and coordinates fills of its chunks.
func xetFileKey(hash string) string { return "xetfile\x00" + hash }

// xorbKey is the ring key of a xorb: its owner keeps its chunks.
func xorbKey(hash string) string { return "xorb\x00" + hash }

// PeerXetRequest names a Xet file for a peer, with the caller's token.
type PeerXetRequest struct {
	Token string `json:"token"`
	Hash  string `json:"hash"`
	// Peek asks only for a record already held for the token's
	// repository (ErrNotCached otherwise): nothing is fetched upstream.
	Peek bool `json:"peek,omitempty"`
}

// XetReconRequest is a client's reconstruction request.
type XetReconRequest struct {
	Token   string // the bearer token: one this cluster issued
	Hash    string
	Version int    // 1 or 2
	Range   string // the Range header over the file's bytes, if any
	Base    string // the distribution's external URL, for the xorb URLs
}

// XetReconstruction answers a CAS reconstruction request: the file's terms
// covering Range, each xorb range pointing at this cache under a signed,
// expiring URL distinct per entry (v2: one per xorb; v1: one per range).
func (n *Node) XetReconstruction(ctx context.Context, req XetReconRequest) ([]byte, error) {
	g, err := n.xet.open(req.Token, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	if !hf.IsXetHash(req.Hash) {
		return nil, fmt.Errorf("%w: Xet file hash %q", hf.ErrInvalid, req.Hash)
	}
	rec, err := n.xetRecordFor(ctx, req.Token, g, req.Hash)
	if err != nil {
		return nil, err
	}
	size := xet.FileSize(rec.Terms)
	if r, _, _, err := n.grantRemote(g); err != nil {
		return nil, err
	} else if r.MaxFileSize > 0 && size > uint64(r.MaxFileSize) {
		return nil, &hubclient.Error{Status: http.StatusForbidden, Code: "FileTooLarge",
			Message: fmt.Sprintf("The file is %d bytes; this cache serves files up to %d bytes from this remote.", size, r.MaxFileSize)}
	}
	start, end := uint64(0), size-1
	if req.Range != "" {
		start, end, err = parseFileRange(req.Range, size)
		if err != nil {
			return nil, err
		}
	}
	var terms []xet.Term
	var offset uint64
	if size > 0 {
		terms, offset, err = xet.SliceTerms(rec.Terms, start, end)
		if errors.Is(err, xet.ErrRangeNotSatisfiable) {
			return nil, errRangeNotSatisfiable(size)
		}
		if err != nil {
			return nil, err
		}
	} else if req.Range != "" {
		return nil, errRangeNotSatisfiable(size)
	}
	exp := strconv.FormatInt(n.cfg.Now().Add(xetURLTTL).Unix(), 10)
	xorbURL := func(xorb string, rs []xet.XorbRange) string {
		b := make([]string, len(rs))
		for i, r := range rs {
			b[i] = strconv.FormatUint(r.Bytes.Start, 10) + "-" + strconv.FormatUint(r.Bytes.End, 10)
		}
		q := url.Values{"f": {req.Hash}, "b": {strings.Join(b, ",")}, "x": {exp}, "t": {req.Token}}
		q.Set("s", n.xet.sign(xorb, q.Get("f"), q.Get("b"), exp, req.Token))
		return strings.TrimRight(req.Base, "/") + XetXorbPath + xorb + "?" + q.Encode()
	}
	used := usedRanges(rec, terms)
	v2 := xet.ReconstructionV2{OffsetIntoFirstRange: offset, Terms: terms, Xorbs: make(map[string][]xet.XorbFetch, len(used))}
	if terms == nil {
		v2.Terms = []xet.Term{}
	}
	for xorb, rs := range used {
		v2.Xorbs[xorb] = []xet.XorbFetch{{URL: xorbURL(xorb, rs), Ranges: rs}}
	}
	if req.Version == 2 {
		return json.Marshal(v2)
	}
	v1 := xet.ReconstructionV1{OffsetIntoFirstRange: offset, Terms: v2.Terms, FetchInfo: make(map[string][]xet.FetchInfo, len(used))}
	for xorb, rs := range used {
		for _, r := range rs {
			v1.FetchInfo[xorb] = append(v1.FetchInfo[xorb], xet.FetchInfo{Range: r.Chunks, URL: xorbURL(xorb, []xet.XorbRange{r}), URLRange: r.Bytes})
		}
	}
	return json.Marshal(v1)
}

// internalXorbQuery is a signed xorb URL query for the cluster's own use
// (a node copying chunks from another): its grant names no repository.
func (x *xetState) internalXorbQuery(xorb, b string, now time.Time) url.Values {
	exp := now.Add(time.Minute)
	t := x.seal(xetGrant{Exp: exp.Unix()})
	x5 := strconv.FormatInt(exp.Unix(), 10)
	return url.Values{"f": {""}, "b": {b}, "x": {x5}, "t": {t}, "s": {x.sign(xorb, "", b, x5, t)}}
}

// usedRanges are the record's xorb ranges that the terms read.
func usedRanges(rec *xetRecord, terms []xet.Term) map[string][]xet.XorbRange {
	out := make(map[string][]xet.XorbRange)
	for _, t := range terms {
		for _, r := range rec.Xorbs[t.Hash] {
			if r.Chunks.Start <= t.Range.Start && t.Range.End <= r.Chunks.End && !slices.Contains(out[t.Hash], r) {
				out[t.Hash] = append(out[t.Hash], r)
			}
		}
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Chunks.Start < rs[j].Chunks.Start })
	}
	return out
}

func errRangeNotSatisfiable(size uint64) error {
	return xetError(http.StatusRequestedRangeNotSatisfiable, "RangeNotSatisfiable",
		"Range not satisfiable: the file has "+strconv.FormatUint(size, 10)+" bytes")
}

// parseFileRange parses one inclusive byte range of a file of size bytes:
// "bytes=a-b", "bytes=a-" or "bytes=-n".
func parseFileRange(h string, size uint64) (start, end uint64, err error) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, fmt.Errorf("%w: Range %q", hf.ErrInvalid, h)
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: Range %q", hf.ErrInvalid, h)
	}
	if a == "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n == 0 {
			return 0, 0, errRangeNotSatisfiable(size)
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, nil
	}
	start, err = strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: Range %q", hf.ErrInvalid, h)
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.ParseUint(b, 10, 64); err != nil || end < start {
			return 0, 0, fmt.Errorf("%w: Range %q", hf.ErrInvalid, h)
		}
	}
	if start >= size {
		return 0, 0, errRangeNotSatisfiable(size)
	}
	return start, min(end, size-1), nil
}

// xetRecordFor is the file's record, from the file's owner on the ring.
func (n *Node) xetRecordFor(ctx context.Context, token string, g xetGrant, hash string) (*xetRecord, error) {
	if n.cluster != nil {
		var rec xetRecord
		local, err := n.viaPeers(ctx, n.cluster.Preference(xetFileKey(hash), 3), PeerXetReconPath, PeerXetRequest{Token: token, Hash: hash}, &rec)
		if !local {
			if err != nil {
				return nil, err
			}
			return &rec, nil
		}
	}
	return n.xetRecordLocal(ctx, g, hash)
}

// XetRecordPeer answers a peer's PeerXetReconPath request as the file's owner.
func (n *Node) XetRecordPeer(ctx context.Context, req PeerXetRequest) (any, error) {
	g, err := n.xet.open(req.Token, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	if !hf.IsXetHash(req.Hash) {
		return nil, fmt.Errorf("%w: Xet file hash %q", hf.ErrInvalid, req.Hash)
	}
	if req.Peek {
		if rec, ok := n.heldXetRecord(g, req.Hash); ok {
			return rec, nil
		}
		return nil, ErrNotCached
	}
	return n.xetRecordLocal(ctx, g, req.Hash)
}

// heldXetRecord is the file's record if this node holds it for the
// grant's repository.
func (n *Node) heldXetRecord(g xetGrant, hash string) (*xetRecord, bool) {
	rec, ok := get[xetRecord](n.meta, bucketXet, hash)
	if ok && slices.Contains(rec.Scopes, grantScope(g)) {
		return &rec, true
	}
	return nil, false
}

// peekXetRecord is the file's record if its owner holds it for the grant's
// repository; nothing is fetched upstream.
func (n *Node) peekXetRecord(ctx context.Context, token string, g xetGrant, hash string) (*xetRecord, bool) {
	if n.cluster != nil {
		var rec xetRecord
		local, err := n.viaPeers(ctx, n.cluster.Preference(xetFileKey(hash), 3), PeerXetReconPath, PeerXetRequest{Token: token, Hash: hash, Peek: true}, &rec)
		if !local {
			return &rec, err == nil
		}
	}
	return n.heldXetRecord(g, hash)
}

// xetRecordLocal is the record as the file's owner: kept, or fetched from
// the upstream CAS when unknown or not yet confirmed for the grant's
// repository.
func (n *Node) xetRecordLocal(ctx context.Context, g xetGrant, hash string) (*xetRecord, error) {
	if rec, ok := n.heldXetRecord(g, hash); ok {
		return rec, nil
	}
	return n.fetchXetRecord(ctx, g, hash)
}

// fetchXetRecord asks the upstream CAS for the file's whole reconstruction
// (once for concurrent callers of one repository), keeps its URLs in
// memory and the rest as the file's record.
func (n *Node) fetchXetRecord(ctx context.Context, g xetGrant, hash string) (*xetRecord, error) {
	sc := grantScope(g)
	v, err, _ := n.xet.group.Do("recon\x00"+sc+"\x00"+hash, func() (any, error) {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		up, err := n.upstreamRecon(hctx, g, hash)
		if err != nil {
			return nil, err
		}
		rec := xetRecord{Hash: hash, Terms: up.Terms, Xorbs: make(map[string][]xet.XorbRange)}
		for xorb, entries := range up.Xorbs {
			for _, e := range entries {
				rec.Xorbs[xorb] = append(rec.Xorbs[xorb], e.Ranges...)
			}
			sort.Slice(rec.Xorbs[xorb], func(i, j int) bool { return rec.Xorbs[xorb][i].Chunks.Start < rec.Xorbs[xorb][j].Chunks.Start })
		}
		if old, ok := get[xetRecord](n.meta, bucketXet, hash); ok {
			rec.Scopes = old.Scopes
		}
		if !slices.Contains(rec.Scopes, sc) {
			rec.Scopes = append(rec.Scopes, sc)
		}
		put(n.meta, bucketXet, hash, rec)
		n.xet.keepURLs(hash, &upstreamRecon{at: n.cfg.Now(), xorbs: up.Xorbs}, n.cfg.Now())
		return &rec, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*xetRecord), nil
}

// upstreamRecon fetches and checks the upstream's v2 reconstruction of a
// whole file, with a fresh upstream token if the held one is refused.
func (n *Node) upstreamRecon(ctx context.Context, g xetGrant, hash string) (*xet.ReconstructionV2, error) {
	r, repo, hubTok, err := n.grantRemote(g)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		ut, err := n.upstreamXetToken(ctx, r, repo, hf.Revision(g.Rev), hubTok, attempt > 0)
		if err != nil {
			return nil, err
		}
		n.metrics.xetReconFetched()
		auth := http.Header{"Authorization": {"Bearer " + ut.AccessToken}}
		v1 := false
		resp, err := r.Hub.Fetch(ctx, ut.CASURL+"/v2/reconstructions/"+hash, auth)
		var he *hubclient.Error
		if errors.As(err, &he) && (he.Status == http.StatusNotFound || he.Status == http.StatusNotImplemented) {
			// A CAS without v2 (or a file v2 does not know): v1 decides.
			v1 = true
			resp, err = r.Hub.Fetch(ctx, ut.CASURL+"/v1/reconstructions/"+hash, auth)
		}
		if errors.As(err, &he) {
			switch {
			case he.Status == http.StatusUnauthorized && attempt == 0:
				continue
			case he.Status == http.StatusNotFound:
				return nil, errXetNotFound
			}
		}
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, errors.Join(hubclient.ErrUnreachable, err)
		}
		var rec xet.ReconstructionV2
		if v1 {
			var old xet.ReconstructionV1
			if err := json.Unmarshal(raw, &old); err != nil {
				return nil, fmt.Errorf("%w: v1 reconstruction of %s: %v", hubclient.ErrBadResponse, hash, err)
			}
			rec = v2Of(&old)
		} else if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("%w: reconstruction of %s: %v", hubclient.ErrBadResponse, hash, err)
		}
		if err := checkRecon(&rec); err != nil {
			return nil, fmt.Errorf("%w: reconstruction of %s: %v", hubclient.ErrBadResponse, hash, err)
		}
		return &rec, nil
	}
}

// v2Of is a v1 reconstruction in v2's shape: each fetch_info entry one
// xorb entry with one range and its own URL.
func v2Of(v1 *xet.ReconstructionV1) xet.ReconstructionV2 {
	v2 := xet.ReconstructionV2{OffsetIntoFirstRange: v1.OffsetIntoFirstRange, Terms: v1.Terms, Xorbs: make(map[string][]xet.XorbFetch, len(v1.FetchInfo))}
	for xorb, fis := range v1.FetchInfo {
		for _, fi := range fis {
			v2.Xorbs[xorb] = append(v2.Xorbs[xorb], xet.XorbFetch{URL: fi.URL, Ranges: []xet.XorbRange{{Chunks: fi.Range, Bytes: fi.URLRange}}})
		}
	}
	return v2
}

// checkRecon checks that a whole-file reconstruction is usable: hashes are
// hashes, and every term's chunks lie in one byte range of its xorb.
func checkRecon(rec *xet.ReconstructionV2) error {
	if rec.OffsetIntoFirstRange != 0 {
		return errors.New("whole-file reconstruction with an offset")
	}
	for xorb, entries := range rec.Xorbs {
		if !hf.IsXetHash(xorb) {
			return fmt.Errorf("xorb hash %q", xorb)
		}
		for _, e := range entries {
			for _, r := range e.Ranges {
				if r.Chunks.End <= r.Chunks.Start || r.Bytes.End < r.Bytes.Start {
					return fmt.Errorf("empty range in xorb %s", xorb)
				}
			}
		}
	}
	for _, t := range rec.Terms {
		found := false
		for _, e := range rec.Xorbs[t.Hash] {
			for _, r := range e.Ranges {
				found = found || (r.Chunks.Start <= t.Range.Start && t.Range.End <= r.Chunks.End)
			}
		}
		if !found || t.Range.End <= t.Range.Start {
			return fmt.Errorf("term %s %d-%d has no fetch range", t.Hash, t.Range.Start, t.Range.End)
		}
	}
	return nil
}

// heldURLs are the upstream's signed URLs for the file's xorb ranges held
// in memory, if younger than upstreamURLTTL; nil otherwise.
func (x *xetState) heldURLs(hash string, now time.Time) map[string][]xet.XorbFetch {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.urls[hash]; u != nil && now.Sub(u.at) < upstreamURLTTL {
		return u.xorbs
	}
	return nil
}

// freshURLs asks the upstream CAS for the file's reconstruction again, for
// fresh signed URLs, and keeps them.
func (n *Node) freshURLs(ctx context.Context, g xetGrant, hash string) (map[string][]xet.XorbFetch, error) {
	up, err := n.upstreamRecon(ctx, g, hash)
	if err != nil {
		return nil, err
	}
	n.xet.keepURLs(hash, &upstreamRecon{at: n.cfg.Now(), xorbs: up.Xorbs}, n.cfg.Now())
	return up.Xorbs, nil
}
