package hubclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// FileMeta is what a HEAD of resolve tells about a file (HF-PROTOCOL.md §2.1, §2.2).
type FileMeta struct {
	Commit             string // X-Repo-Commit: the 40-hex commit the revision resolved to
	ETag               string // normalised (no quotes, no W/): X-Linked-Etag if present, else ETag
	LFS                bool   // X-Linked-Etag was present (LFS or Xet file; ETag is its sha256)
	Size               int64  // X-Linked-Size, else the Content-Length of a 200
	ContentType        string // of the final 200; "" when the metadata came from a redirect (its text/plain is the redirect body's)
	ContentDisposition string
	Location           string // absolute URL of the bytes (the CDN URL of an LFS 302); "" when the Hub serves them itself
	XetHash            string // X-Xet-Hash: the Xet file id of a Xet-backed file (64 hex), else ""
}

// HeadFile asks the Hub for a file's metadata: HEAD resolve/{rev}/{path}.
//
// Redirects on the Hub's own origin (renamed repos' 307, the
// /api/resolve-cache/…?etag=… 307, query kept) are followed with the token,
// up to 5 hops. A redirect to another origin (the LFS 302 to the CDN) ends
// the HEAD: the metadata is read from the redirect's own headers and its
// target is returned as Location; the CDN is not contacted. Connection
// errors, 408, 429 and 5xx are retried with backoff.
func (c *Client) HeadFile(ctx context.Context, repo hf.Repo, rev hf.Revision, path hf.Path, token string) (*FileMeta, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	u := c.URL(repo.FilePath("resolve", rev, path))
	for hops := 0; ; hops++ {
		resp, err := c.roundTrip(ctx, http.MethodHead, u, c.header(u, token), nil, true)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			resp.Body.Close()
			return fileMeta(resp, u, "")
		case isRedirect(resp.StatusCode):
			resp.Body.Close()
			next, err := resolveLocation(resp, u)
			if err != nil {
				return nil, err
			}
			if !c.sameOrigin(next) {
				return fileMeta(resp, u, next)
			}
			if hops >= maxRedirects {
				return nil, fmt.Errorf("%w: more than %d redirects from %s", ErrBadResponse, maxRedirects, redact(u))
			}
			u = next
		default:
			return nil, newError(resp)
		}
	}
}

// fileMeta reads the file contract from a 2xx (loc == "") or from a
// cross-origin redirect to loc.
func fileMeta(resp *http.Response, u, loc string) (*FileMeta, error) {
	h := resp.Header
	bad := func(what string) error {
		return fmt.Errorf("%w: %d from %s: %s", ErrBadResponse, resp.StatusCode, redact(u), what)
	}
	m := &FileMeta{
		Commit:             strings.ToLower(strings.TrimSpace(h.Get(hf.HeaderRepoCommit))),
		ContentDisposition: h.Get("Content-Disposition"),
		Location:           loc,
	}
	if !hf.IsCommit(m.Commit) {
		return nil, bad("missing or malformed " + hf.HeaderRepoCommit)
	}
	if linked := hf.NormalizeETag(h.Get(hf.HeaderLinkedETag)); linked != "" {
		m.ETag, m.LFS = linked, true
	} else {
		m.ETag = hf.NormalizeETag(h.Get("ETag"))
	}
	if m.ETag == "" {
		return nil, bad("no ETag")
	}
	switch ls := strings.TrimSpace(h.Get(hf.HeaderLinkedSize)); {
	case ls != "":
		n, err := strconv.ParseInt(ls, 10, 64)
		if err != nil || n < 0 {
			return nil, bad("malformed " + hf.HeaderLinkedSize)
		}
		m.Size = n
	case loc == "" && resp.ContentLength >= 0:
		m.Size = resp.ContentLength
	default:
		// A redirect's Content-Length is its own body's, never the file's.
		return nil, bad("no size")
	}
	if loc == "" {
		m.ContentType = h.Get("Content-Type")
	}
	if xh := strings.ToLower(strings.TrimSpace(h.Get(hf.HeaderXetHash))); hf.IsXetHash(xh) {
		m.XetHash = xh
	}
	return m, nil
}

// Body is an open upstream file body. Status and Header are the final
// response's, for the caller to check; Size is the file's total size from
// Content-Range (206) or Content-Length (200), -1 when unknown.
//
// Read enforces StallTimeout; its errors wrap ErrUnreachable (the caller
// resumes with a new range). Close must be called.
type Body struct {
	io.ReadCloser
	Status int
	Header http.Header
	Size   int64
}

// GetFile opens bytes [off, end) of a file (end -1: to EOF; off 0 and end
// -1: the whole file, no Range header).
//
// loc, if set, is a CDN URL from an earlier HeadFile; it is tried first and
// abandoned for the Hub when it answers 400/401/403/404/410 (an expired
// signature). From the Hub, resolve/{rev}/{path} is fetched with the token
// and redirects are followed here: the token goes only to the Hub's origin,
// never to the CDN. Requests say Accept-Encoding: identity.
//
// A 206 must carry a Content-Range starting at off (else ErrBadResponse). A
// 200 to a Range starting past 0 is ErrRangeIgnored (body closed); a 200 to
// a range starting at 0 is returned, Status 200, for the caller to read the
// prefix it wants. Other statuses come back as *Error. Nothing is retried.
func (c *Client) GetFile(ctx context.Context, repo hf.Repo, rev hf.Revision, path hf.Path, token, loc string, off, end int64) (*Body, error) {
	if off < 0 || end < -1 || (end != -1 && end <= off) {
		return nil, fmt.Errorf("%w: [%d, %d)", ErrInvalidRange, off, end)
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	var rng string
	if off > 0 || end != -1 {
		rng = "bytes=" + strconv.FormatInt(off, 10) + "-"
		if end != -1 {
			rng += strconv.FormatInt(end-1, 10)
		}
	}

	reqCtx, cancel := context.WithCancelCause(ctx)
	var resp *http.Response
	var u string
	var err error
	if loc != "" {
		resp, u, err = c.get(reqCtx, loc, token, rng)
		if err != nil {
			cancel(nil)
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
			http.StatusNotFound, http.StatusGone:
			c.log.Info("CDN location refused, asking the Hub again", "url", redact(u), "status", resp.StatusCode)
			discard(resp)
			resp = nil
		}
	}
	if resp == nil {
		resp, u, err = c.get(reqCtx, c.URL(repo.FilePath("resolve", rev, path)), token, rng)
		if err != nil {
			cancel(nil)
			return nil, err
		}
	}

	fail := func(err error) (*Body, error) {
		discard(resp)
		cancel(nil)
		return nil, err
	}
	size := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != off || (end != -1 && last >= end) {
			return fail(fmt.Errorf("%w: 206 from %s with Content-Range %q for %s",
				ErrBadResponse, redact(u), resp.Header.Get("Content-Range"), rangeOrAll(rng)))
		}
		size = total
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			return fail(fmt.Errorf("%w: 200 from %s to %s", ErrRangeIgnored, redact(u), rng))
		}
		size = resp.ContentLength
	case isRedirect(resp.StatusCode):
		return fail(fmt.Errorf("%w: %d from %s not followed", ErrBadResponse, resp.StatusCode, redact(u)))
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return fail(fmt.Errorf("%w: %d from %s to a GET", ErrBadResponse, resp.StatusCode, redact(u)))
	default:
		e := newError(resp)
		cancel(nil)
		return nil, e
	}
	return &Body{
		ReadCloser: newStallBody(ctx, resp.Body, c.cfg.StallTimeout, cancel),
		Status:     resp.StatusCode,
		Header:     resp.Header,
		Size:       size,
	}, nil
}

// get GETs u, following up to maxRedirects redirects itself. Each hop
// carries the token only if it is on the Hub's origin. It returns the final
// response (body open) and its URL; too many redirects come back as the last
// 3xx for the caller to reject.
func (c *Client) get(ctx context.Context, u, token, rng string) (*http.Response, string, error) {
	for hops := 0; ; hops++ {
		hdr := c.header(u, token)
		if rng != "" {
			hdr.Set("Range", rng)
		}
		resp, err := c.roundTrip(ctx, http.MethodGet, u, hdr, nil, false)
		if err != nil {
			return nil, u, err
		}
		if !isRedirect(resp.StatusCode) || resp.StatusCode == http.StatusNotModified || hops >= maxRedirects {
			return resp, u, nil
		}
		next, err := resolveLocation(resp, u)
		discard(resp)
		if err != nil {
			return nil, u, err
		}
		u = next
	}
}

// parseContentRange parses "bytes first-last/total" (total may be "*": -1).
func parseContentRange(v string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, false
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, false
		}
	}
	return first, last, total, true
}

func rangeOrAll(rng string) string {
	if rng == "" {
		return "the whole file"
	}
	return rng
}
