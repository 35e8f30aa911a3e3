package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// The cache speaks Xet (HF-PROTOCOL.md §3.4) under each distribution's base
// path: resolve advertises the cache as the file's CAS, the token route
// issues the cache's own tokens, and these routes answer as the Hub's CAS:
//
//	{base}/v1/reconstructions/{hash}   v1 reconstruction (hf_xet)
//	{base}/v2/reconstructions/{hash}   v2 reconstruction (@huggingface/hub)
//	{base}/reconstruction/{hash}       v1, the path older hf_xet asks for
//	{base}/xet/xorb/{xorb}?…           signed xorb ranges the reconstructions list

// xetRoute is a CAS request.
type xetRoute struct {
	Kind    string // "recon" or "xorb"
	Version int    // reconstruction version: 1 or 2
	Hash    string
}

// parseXetRoute recognises the CAS routes; ok is false for anything else.
func parseXetRoute(segs []string) (*xetRoute, bool) {
	switch {
	case len(segs) == 3 && (segs[0] == "v1" || segs[0] == "v2") && segs[1] == "reconstructions" && hf.IsXetHash(segs[2]):
		return &xetRoute{Kind: "recon", Version: int(segs[0][1] - '0'), Hash: segs[2]}, true
	case len(segs) == 2 && segs[0] == "reconstruction" && hf.IsXetHash(segs[1]):
		return &xetRoute{Kind: "recon", Version: 1, Hash: segs[1]}, true
	case len(segs) == 3 && segs[0] == "xet" && segs[1] == "xorb" && hf.IsXetHash(segs[2]):
		return &xetRoute{Kind: "xorb", Hash: segs[2]}, true
	}
	return nil, false
}

// serveXet answers a CAS request.
func (c *Client) serveXet(w http.ResponseWriter, r *http.Request, d Distribution, xr *xetRoute) {
	if r.Method != http.MethodGet {
		writeError(w, errMethodNotAllowed)
		return
	}
	switch xr.Kind {
	case "recon":
		body, err := c.node.XetReconstruction(r.Context(), node.XetReconRequest{
			Token: bearer(r), Hash: xr.Hash, Version: xr.Version, Range: r.Header.Get("Range"), Base: c.externalBase(r, d),
		})
		if err != nil {
			writeError(w, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	case "xorb":
		xc, ranges, ok := c.openXorb(r.Context(), w, r, xr.Hash, r.URL.Query())
		if !ok {
			return
		}
		if c.relayed(w, r, xc) {
			return
		}
		c.serveXorb(w, r, xc, ranges)
	}
}

// servePeerXorb serves a xorb range a peer relays, as the xorb's owner.
func (c *Client) servePeerXorb(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	xorb := q.Get("xorb")
	local := q.Get("local") == "1" // a peer copying chunks: only what is held, verified
	q.Del("xorb")
	q.Del("local")
	xc, ranges, ok := c.openXorb(node.AsPeerHop(r.Context()), w, r, xorb, q)
	if !ok {
		return
	}
	if local && !xc.Held(ranges) {
		writeError(w, node.ErrNotCached)
		return
	}
	c.serveXorb(w, r, xc, ranges)
}

// openXorb checks a xorb URL and its Range, or answers the error.
func (c *Client) openXorb(ctx context.Context, w http.ResponseWriter, r *http.Request, xorb string, q url.Values) (*node.XorbContent, [][2]uint64, bool) {
	xc, err := c.node.OpenXorb(ctx, xorb, q)
	if err == nil {
		var ranges [][2]uint64
		if ranges, err = xorbRanges(r.Header.Get("Range"), xc); err == nil {
			return xc, ranges, true
		}
	}
	writeError(w, err)
	return nil, nil, false
}

// xorbRanges parses a xorb GET's Range: one or more inclusive byte ranges,
// each within the URL's signed ranges (else 403, as the Hub's CAS answers).
func xorbRanges(h string, xc *node.XorbContent) ([][2]uint64, error) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return nil, fmt.Errorf("%w: a xorb request needs a Range of bytes", hf.ErrInvalid)
	}
	var out [][2]uint64
	for _, part := range strings.Split(spec, ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		z, err2 := strconv.ParseUint(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || z < a {
			return nil, fmt.Errorf("%w: xorb Range %q", hf.ErrInvalid, h)
		}
		if !xc.Allowed(a, z) {
			return nil, node.ErrXetURL
		}
		out = append(out, [2]uint64{a, z})
	}
	if len(out) == 0 || len(out) > 64 {
		return nil, fmt.Errorf("%w: xorb Range %q", hf.ErrInvalid, h)
	}
	return out, nil
}

// serveXorb streams xorb ranges from this node's chunk store: one range as
// a 206 with Content-Range, several as multipart/byteranges (RFC 9110
// §14.6). The first bytes are read before the status is sent, so a fill
// that fails at once is answered in the Hub's error shape; a failure later
// breaks the transfer.
func (c *Client) serveXorb(w http.ResponseWriter, r *http.Request, xc *node.XorbContent, ranges [][2]uint64) {
	ctx := r.Context()
	// A hit when every chunk was there, verified, before any was read.
	held := xc.Held(ranges)
	rd := xc.Reader(ctx, ranges[0][0], ranges[0][1])
	buf := make([]byte, 256<<10)
	first, err := io.ReadAtLeast(rd, buf, 1)
	if err != nil {
		rd.Close()
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set(headerSource, node.SourceUpstream)
	if held {
		h.Set(headerSource, node.SourceDisk)
	}
	if len(ranges) == 1 {
		a, z := ranges[0][0], ranges[0][1]
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Range", "bytes "+strconv.FormatUint(a, 10)+"-"+strconv.FormatUint(z, 10)+"/*")
		h.Set("Content-Length", strconv.FormatUint(z-a+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(buf[:first])
		c.copyXorb(w, r, rd, buf)
		return
	}
	boundary := newBoundary()
	part := func(a, z uint64) string {
		return "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes " +
			strconv.FormatUint(a, 10) + "-" + strconv.FormatUint(z, 10) + "/*\r\n\r\n"
	}
	closing := "\r\n--" + boundary + "--\r\n"
	length := uint64(len(closing))
	for _, rg := range ranges {
		length += uint64(len(part(rg[0], rg[1]))) + rg[1] - rg[0] + 1
	}
	h.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	h.Set("Content-Length", strconv.FormatUint(length, 10))
	w.WriteHeader(http.StatusPartialContent)
	for i, rg := range ranges {
		io.WriteString(w, part(rg[0], rg[1]))
		if i > 0 {
			rd = xc.Reader(ctx, rg[0], rg[1])
		} else {
			w.Write(buf[:first])
		}
		c.copyXorb(w, r, rd, buf)
	}
	io.WriteString(w, closing)
}

// copyXorb copies the rest of a xorb range and closes it; a failure breaks
// the transfer, so the client never takes a short range for a whole one.
func (c *Client) copyXorb(w http.ResponseWriter, r *http.Request, rd io.ReadCloser, buf []byte) {
	defer rd.Close()
	if _, err := io.CopyBuffer(writerOnly{w}, rd, buf); err != nil {
		if r.Context().Err() == nil {
			c.log.Warn("aborting xorb response", "path", r.URL.Path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

func newBoundary() string {
	var b [12]byte
	rand.Read(b[:])
	return "hfcache-" + hex.EncodeToString(b[:])
}

// serveXetToken answers GET /api/{type}s/{id}/xet-read-token/{rev} with the
// cache's own token: the JSON body hf.js reads and the X-Xet-* headers
// huggingface_hub reads, both naming this distribution as the CAS.
func (c *Client) serveXetToken(w http.ResponseWriter, r *http.Request, d Distribution, ar *apiRoute) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, errMethodNotAllowed)
		return
	}
	tok, err := c.node.XetToken(r.Context(), node.XetTokenRequest{
		Remote: d.Remote, Access: d.Access, Repository: d.Repository, Repo: ar.Repo, Revision: ar.Rev, Token: bearer(r),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	base := c.externalBase(r, d)
	exp := tok.Exp.Unix()
	h := w.Header()
	h.Set(hf.HeaderXetAccessToken, tok.AccessToken)
	h.Set(hf.HeaderXetExpiration, strconv.FormatInt(exp, 10))
	h.Set(hf.HeaderXetCASURL, base)
	h.Set("Cache-Control", "no-store")
	body, _ := json.Marshal(map[string]any{"accessToken": tok.AccessToken, "exp": exp, "casUrl": base})
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// xetLinks is the Link header of a Xet-backed file's resolve answer: the
// token route and the reconstruction, both at this cache.
func (c *Client) xetLinks(r *http.Request, d Distribution, f *node.File) string {
	base := c.externalBase(r, d)
	return "<" + base + f.Repo.APIPath("/xet-read-token/"+f.Commit) + `>; rel="xet-auth", <` +
		base + "/v1/reconstructions/" + f.XetHash + `>; rel="xet-reconstruction-info"`
}

// serveXetFileInfo answers resolve in the Xet "fileinfo" form that
// @huggingface/hub asks for: metadata in headers, no file bytes.
func (c *Client) serveXetFileInfo(w http.ResponseWriter, r *http.Request, f *node.File) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("Accept-Ranges")
	body, _ := json.Marshal(map[string]any{"hash": f.XetHash, "size": f.Size, "etag": f.Blob.Hex})
	h.Set("Content-Type", hf.XetFileInfoType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}
