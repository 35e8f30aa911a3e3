package hubclient

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// outgoing is a copy of a caller's header fit to send upstream: no
// hop-by-hop headers, Host or Content-Length, identity encoding, and the
// client's User-Agent unless the caller set one.
func (c *Client) outgoing(header http.Header) http.Header {
	hdr := header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	stripHopByHop(hdr)
	hdr.Del("Host")
	hdr.Del("Content-Length")
	hdr.Set("Accept-Encoding", "identity")
	if hdr.Get("User-Agent") == "" && c.cfg.UserAgent != "" {
		hdr.Set("User-Agent", c.cfg.UserAgent)
	}
	return hdr
}

// Do performs an API or pass-through request on the Hub:
// method BaseURL+escapedPath?rawQuery.
//
// header is the caller's (Accept, Content-Type, Authorization, …): it is
// copied, hop-by-hop headers, Host and Content-Length are dropped,
// Accept-Encoding is forced to identity, and User-Agent is set if absent.
// body may be nil.
//
// Redirects on the Hub's origin (renamed repos) are followed with the same
// headers (a 301/302/303 turns a non-GET into a body-less GET); redirects to
// another origin, and 304, are returned as they are. GET and HEAD are
// retried like metadata calls; other methods are sent once.
//
// A response other than 2xx/3xx is returned as *Error (at most 64 KiB of
// its body read). Otherwise the caller gets the raw response, with
// hop-by-hop headers removed and its Body subject to StallTimeout; it must
// close Body.
func (c *Client) Do(ctx context.Context, method, escapedPath, rawQuery string, header http.Header, body []byte) (*http.Response, error) {
	if !strings.HasPrefix(escapedPath, "/") {
		return nil, fmt.Errorf("hubclient: path %q does not start with /", escapedPath)
	}
	u := c.URL(escapedPath)
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	hdr := c.outgoing(header)

	reqCtx, cancel := context.WithCancelCause(ctx)
	for hops := 0; ; hops++ {
		retry := method == http.MethodGet || method == http.MethodHead
		resp, err := c.roundTrip(reqCtx, method, u, hdr, body, retry)
		if err != nil {
			cancel(nil)
			return nil, err
		}
		if isRedirect(resp.StatusCode) && resp.StatusCode != http.StatusNotModified && resp.Header.Get("Location") != "" {
			next, err := resolveLocation(resp, u)
			if err != nil {
				discard(resp)
				cancel(nil)
				return nil, err
			}
			if c.sameOrigin(next) {
				discard(resp)
				if hops >= maxRedirects {
					cancel(nil)
					return nil, fmt.Errorf("%w: more than %d redirects from %s", ErrBadResponse, maxRedirects, redact(u))
				}
				switch resp.StatusCode {
				case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther:
					if method != http.MethodGet && method != http.MethodHead {
						method, body = http.MethodGet, nil
						hdr.Del("Content-Type")
					}
				}
				u = next
				continue
			}
		}
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			e := newError(resp)
			cancel(nil)
			return nil, e
		}
		stripHopByHop(resp.Header)
		resp.Body = newStallBody(ctx, resp.Body, c.cfg.StallTimeout, cancel)
		return resp, nil
	}
}
