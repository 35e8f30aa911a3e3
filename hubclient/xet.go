package hubclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// XetToken is the Hub's answer on the Xet token route: a short-lived token
// for its CAS, and the CAS's base URL.
type XetToken struct {
	AccessToken string
	Exp         time.Time
	CASURL      string
}

// XetReadToken asks the Hub for a Xet read token for repo at rev, with the
// caller's (or the remote's) Hub token: GET
// /api/{type}s/{id}/xet-read-token/{rev}. The Hub applies its access rules
// (gated, private) exactly as on resolve; its refusals come back as *Error.
func (c *Client) XetReadToken(ctx context.Context, repo hf.Repo, rev hf.Revision, token string) (*XetToken, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	h := http.Header{"Accept": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(ctx, http.MethodGet, repo.APIPath("/xet-read-token/"+rev.Escaped()), "", h, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"accessToken"`
		Exp         int64  `json:"exp"`
		CASURL      string `json:"casUrl"`
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the Xet token: %v", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &body) != nil || body.AccessToken == "" || body.Exp <= 0 {
		return nil, fmt.Errorf("%w: Xet token route answered %d without a usable token", ErrBadResponse, resp.StatusCode)
	}
	u, err := url.Parse(body.CASURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: Xet token route named CAS URL %q", ErrBadResponse, body.CASURL)
	}
	return &XetToken{AccessToken: body.AccessToken, Exp: time.Unix(body.Exp, 0), CASURL: strings.TrimRight(body.CASURL, "/")}, nil
}

// Fetch GETs an absolute URL outside the Hub's API: the Xet CAS (with its
// own bearer token in header) or a signed xorb URL (no token). Connection
// errors, 408, 429 and 5xx are retried with backoff; the Hub token is never
// added. A status other than 2xx comes back as *Error (body read and
// closed); a 2xx body is subject to StallTimeout and must be closed.
func (c *Client) Fetch(ctx context.Context, rawURL string, header http.Header) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %s", ErrBadResponse, redact(rawURL))
	}
	hdr := c.outgoing(header)
	reqCtx, cancel := context.WithCancelCause(ctx)
	resp, err := c.roundTrip(reqCtx, http.MethodGet, rawURL, hdr, nil, true)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		e := newError(resp)
		cancel(nil)
		return nil, e
	}
	resp.Body = newStallBody(ctx, resp.Body, c.cfg.StallTimeout, cancel)
	return resp, nil
}
