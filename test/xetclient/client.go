// Package xetclient downloads files over Xet the way hf_xet and
// @huggingface/hub do, for tests and benchmarks that drive the cache from
// Go: resolve (HEAD, or the "fileinfo" GET), the token route from the
// xet-auth Link, a v1 or v2 reconstruction, ranged xorb GETs (one range per
// request, or all of an entry's ranges in one multipart request), chunk
// decoding and reassembly. Like the real clients it checks no content hash:
// that is the cache's job, and tests compare the bytes themselves.
package xetclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/xet"
)

// Client is a Xet download client.
type Client struct {
	HTTP *http.Client
	// Token is the caller's Hub token, sent to resolve and the token route.
	HubToken string
	// Version is the reconstruction API version: 1 (hf_xet) or 2 (hf.js).
	Version int
	// MultiRange fetches all of a v2 entry's ranges in one request, as
	// hf.js does; otherwise one request per range.
	MultiRange bool
}

// Info is what resolve tells a Xet client about a file.
type Info struct {
	Hash     string
	Size     int64
	ETag     string
	TokenURL string // the xet-auth Link
	ReconURL string // the xet-reconstruction-info Link
}

// ErrNotXet is returned by Info for a file resolve does not advertise
// over Xet.
var ErrNotXet = errors.New("xetclient: resolve advertises no Xet for this file")

var linkRE = regexp.MustCompile(`<([^>]+)>;\s*rel="([^"]+)"`)

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) get(ctx context.Context, method, u string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	return c.http().Do(req)
}

// StatusError is a response the client did not expect.
type StatusError struct {
	URL    string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("xetclient: %s answered %d: %s", e.URL, e.Status, e.Body)
}

func statusError(u string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return &StatusError{URL: u, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}

// Info HEADs the resolve URL, as huggingface_hub does, and reads X-Xet-Hash
// and the Link header.
func (c *Client) Info(ctx context.Context, fileURL string) (*Info, error) {
	hdr := http.Header{}
	if c.HubToken != "" {
		hdr.Set("Authorization", "Bearer "+c.HubToken)
	}
	resp, err := c.get(ctx, http.MethodHead, fileURL, hdr)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: fileURL, Status: resp.StatusCode, Body: resp.Header.Get("X-Error-Message")}
	}
	info := &Info{Hash: resp.Header.Get("X-Xet-Hash"), ETag: resp.Header.Get("X-Linked-Etag")}
	info.Size, _ = strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64)
	for _, m := range linkRE.FindAllStringSubmatch(resp.Header.Get("Link"), -1) {
		switch m[2] {
		case "xet-auth":
			info.TokenURL = m[1]
		case "xet-reconstruction-info":
			info.ReconURL = m[1]
		}
	}
	if info.Hash == "" || info.TokenURL == "" || info.ReconURL == "" {
		return nil, ErrNotXet
	}
	return info, nil
}

// XetToken is the token route's answer, from its JSON body and headers.
type XetToken struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CASURL      string `json:"casUrl"`
	// The same values from the X-Xet-* headers huggingface_hub reads.
	HeaderToken, HeaderExp, HeaderCAS string
}

// XetToken asks the token route (the xet-auth Link, used verbatim).
func (c *Client) XetToken(ctx context.Context, tokenURL string) (*XetToken, error) {
	hdr := http.Header{}
	if c.HubToken != "" {
		hdr.Set("Authorization", "Bearer "+c.HubToken)
	}
	resp, err := c.get(ctx, http.MethodGet, tokenURL, hdr)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(tokenURL, resp)
	}
	defer resp.Body.Close()
	var t XetToken
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return nil, err
	}
	t.HeaderToken = resp.Header.Get("X-Xet-Access-Token")
	t.HeaderExp = resp.Header.Get("X-Xet-Token-Expiration")
	t.HeaderCAS = resp.Header.Get("X-Xet-Cas-Url")
	return &t, nil
}

// Reconstruction fetches a reconstruction (v1 documents are returned as
// v2 with one entry per fetch_info) for bytes [start, end] (end < 0: to
// the end of the file).
func (c *Client) Reconstruction(ctx context.Context, reconURL, token string, start, end int64) (*xet.ReconstructionV2, error) {
	u := reconURL
	if c.Version == 2 {
		u = strings.Replace(u, "/v1/reconstructions/", "/v2/reconstructions/", 1)
	}
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	if start > 0 || end >= 0 {
		r := "bytes=" + strconv.FormatInt(start, 10) + "-"
		if end >= 0 {
			r += strconv.FormatInt(end, 10)
		}
		hdr.Set("Range", r)
	}
	resp, err := c.get(ctx, http.MethodGet, u, hdr)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(u, resp)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if c.Version == 2 {
		var v2 xet.ReconstructionV2
		return &v2, json.Unmarshal(raw, &v2)
	}
	var v1 xet.ReconstructionV1
	if err := json.Unmarshal(raw, &v1); err != nil {
		return nil, err
	}
	v2 := &xet.ReconstructionV2{OffsetIntoFirstRange: v1.OffsetIntoFirstRange, Terms: v1.Terms, Xorbs: map[string][]xet.XorbFetch{}}
	for xorb, fis := range v1.FetchInfo {
		for _, fi := range fis {
			v2.Xorbs[xorb] = append(v2.Xorbs[xorb], xet.XorbFetch{URL: fi.URL, Ranges: []xet.XorbRange{{Chunks: fi.Range, Bytes: fi.URLRange}}})
		}
	}
	return v2, nil
}

// Download fetches a whole file over Xet.
func (c *Client) Download(ctx context.Context, fileURL string) ([]byte, error) {
	return c.DownloadRange(ctx, fileURL, 0, -1)
}

// DownloadRange fetches bytes [start, end] of a file over Xet (end < 0:
// to the end).
func (c *Client) DownloadRange(ctx context.Context, fileURL string, start, end int64) ([]byte, error) {
	info, err := c.Info(ctx, fileURL)
	if err != nil {
		return nil, err
	}
	tok, err := c.XetToken(ctx, info.TokenURL)
	if err != nil {
		return nil, err
	}
	rec, err := c.Reconstruction(ctx, info.ReconURL, tok.AccessToken, start, end)
	if err != nil {
		return nil, err
	}
	out, err := c.Assemble(ctx, rec)
	if err != nil {
		return nil, err
	}
	if end >= 0 && int64(len(out)) > end-start+1 {
		out = out[:end-start+1]
	}
	return out, nil
}

type chunkKey struct {
	xorb  string
	index uint32
}

// Assemble fetches the xorb ranges a reconstruction names and returns the
// bytes its terms make, minus offset_into_first_range.
func (c *Client) Assemble(ctx context.Context, rec *xet.ReconstructionV2) ([]byte, error) {
	chunks := make(map[chunkKey][]byte)
	for xorb, entries := range rec.Xorbs {
		for _, e := range entries {
			if err := c.fetchEntry(ctx, xorb, e, chunks); err != nil {
				return nil, err
			}
		}
	}
	var out []byte
	for _, t := range rec.Terms {
		for i := t.Range.Start; i < t.Range.End; i++ {
			b, ok := chunks[chunkKey{t.Hash, i}]
			if !ok {
				return nil, fmt.Errorf("xetclient: chunk %d of xorb %s was not fetched", i, t.Hash)
			}
			out = append(out, b...)
		}
	}
	if uint64(len(out)) < rec.OffsetIntoFirstRange {
		return nil, errors.New("xetclient: offset past the data")
	}
	return out[rec.OffsetIntoFirstRange:], nil
}

func (c *Client) fetchEntry(ctx context.Context, xorb string, e xet.XorbFetch, chunks map[chunkKey][]byte) error {
	rangeOf := func(rs []xet.XorbRange) string {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = strconv.FormatUint(r.Bytes.Start, 10) + "-" + strconv.FormatUint(r.Bytes.End, 10)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	groups := [][]xet.XorbRange{e.Ranges}
	if !c.MultiRange || len(e.Ranges) == 1 {
		groups = groups[:0]
		for _, r := range e.Ranges {
			groups = append(groups, []xet.XorbRange{r})
		}
	}
	for _, g := range groups {
		resp, err := c.get(ctx, http.MethodGet, e.URL, http.Header{"Range": {rangeOf(g)}})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusPartialContent {
			return statusError(e.URL, resp)
		}
		if len(g) == 1 {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if err := decode(xorb, g[0], body, chunks); err != nil {
				return err
			}
			continue
		}
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			resp.Body.Close()
			return fmt.Errorf("xetclient: multi-range answer of type %q", resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(resp.Body, params["boundary"])
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				if i != len(g) {
					resp.Body.Close()
					return fmt.Errorf("xetclient: %d parts for %d ranges", i, len(g))
				}
				break
			}
			if err != nil {
				resp.Body.Close()
				return err
			}
			body, err := io.ReadAll(p)
			if err != nil || i >= len(g) {
				resp.Body.Close()
				return fmt.Errorf("xetclient: part %d: %v", i, err)
			}
			if err := decode(xorb, g[i], body, chunks); err != nil {
				resp.Body.Close()
				return err
			}
		}
		resp.Body.Close()
	}
	return nil
}

func decode(xorb string, r xet.XorbRange, body []byte, chunks map[chunkKey][]byte) error {
	if uint64(len(body)) != r.Bytes.End-r.Bytes.Start+1 {
		return fmt.Errorf("xetclient: xorb %s range %d-%d: %d bytes", xorb, r.Bytes.Start, r.Bytes.End, len(body))
	}
	n := uint32(0)
	err := xet.ReadChunks(body, r.Chunks.Start, func(i uint32, _ int, h xet.Header, payload []byte) error {
		raw, err := xet.DecodeChunk(h, payload)
		if err != nil {
			return err
		}
		chunks[chunkKey{xorb, i}] = raw
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != r.Chunks.End-r.Chunks.Start {
		return fmt.Errorf("xetclient: xorb %s range had %d chunks, want %d", xorb, n, r.Chunks.End-r.Chunks.Start)
	}
	return nil
}
