// Package hubclient talks to an upstream Hugging Face Hub: it resolves file
// metadata (HEAD resolve, capturing the LFS redirect instead of following
// it), opens file bytes with exact ranges (following the CDN redirect itself,
// never handing the caller's token to another host), performs API and
// pass-through requests, retries what is safe to retry, and maps the Hub's
// error responses to sentinel errors.
//
// The wire contract is HF-PROTOCOL.md (§2 resolve, §4 API, §5 errors, §11
// traps). The client knows nothing about the cluster or the cache: it is a
// typed, careful HTTP client for one upstream base URL.
//
// Tokens travel only in the Authorization header, only to the Hub's own
// origin, and are never logged nor put in error messages; signed CDN URLs
// are redacted (query dropped) wherever a URL is logged or reported.
package hubclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// BaseURL is the Hub's endpoint, e.g. "https://huggingface.co". It may
	// carry a path prefix (another mirror mounted under "/hf").
	BaseURL string
	// ConnectTimeout bounds dialing plus the TLS handshake.
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers once a request is sent.
	HeaderTimeout time.Duration
	// StallTimeout is the longest a Read of a response body may wait for
	// data. There is deliberately no total timeout: files are hundreds of GB.
	StallTimeout time.Duration
	// MaxRetries is how many times a metadata or API call (HEAD, GET via Do)
	// is retried after a connection error, 408, 429 or 5xx. 0 disables retries.
	MaxRetries int
	// RetryBase is the first backoff delay; it doubles per attempt, with
	// jitter, up to RetryMaxDelay.
	RetryBase time.Duration
	// RetryMaxDelay caps one backoff delay. A Retry-After (or RateLimit
	// reset) longer than this is not waited for: the call fails at once with
	// the Hub's error, RetryAfter set, for the caller to pass on.
	RetryMaxDelay time.Duration
	// UserAgent is sent on every request that does not carry its own.
	UserAgent string
	// Logger receives retry and fallback events. nil discards them.
	Logger *slog.Logger
	// Metrics counts this client's upstream traffic (Metrics.Remote);
	// nil counts nothing.
	Metrics *RemoteMetrics
}

// DefaultConfig is a client for https://huggingface.co with the timeouts
// the official clients tolerate (HF-PROTOCOL.md §11.9).
func DefaultConfig() Config {
	return Config{
		BaseURL:        "https://huggingface.co",
		ConnectTimeout: 10 * time.Second,
		HeaderTimeout:  30 * time.Second,
		StallTimeout:   30 * time.Second,
		MaxRetries:     4,
		RetryBase:      200 * time.Millisecond,
		RetryMaxDelay:  10 * time.Second,
		UserAgent:      "hfcache",
	}
}

// Validate reports every problem of the configuration at once; each wraps
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if u, err := url.Parse(c.BaseURL); err != nil {
		bad("BaseURL does not parse")
	} else {
		if u.Scheme != "http" && u.Scheme != "https" {
			bad("BaseURL scheme must be http or https, not %q", u.Scheme)
		}
		if u.Host == "" {
			bad("BaseURL has no host")
		}
		if u.User != nil {
			bad("BaseURL must not carry credentials")
		}
		if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			bad("BaseURL must not have a query or fragment")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ConnectTimeout", c.ConnectTimeout},
		{"HeaderTimeout", c.HeaderTimeout},
		{"StallTimeout", c.StallTimeout},
		{"RetryBase", c.RetryBase},
		{"RetryMaxDelay", c.RetryMaxDelay},
	} {
		if d.v <= 0 {
			bad("%s must be positive, got %v", d.name, d.v)
		}
	}
	if c.MaxRetries < 0 {
		bad("MaxRetries must not be negative, got %d", c.MaxRetries)
	}
	if c.RetryBase > 0 && c.RetryMaxDelay > 0 && c.RetryMaxDelay < c.RetryBase {
		bad("RetryMaxDelay (%v) is below RetryBase (%v)", c.RetryMaxDelay, c.RetryBase)
	}
	if strings.ContainsAny(c.UserAgent, "\r\n") {
		bad("UserAgent contains a line break")
	}
	return errors.Join(errs...)
}

// maxRedirects is how many redirects one call follows before giving up.
const maxRedirects = 5

// Client talks to one upstream Hub. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string // BaseURL without a trailing "/"
	origin string // scheme://host:port of BaseURL, normalised
	tr     *http.Transport
	hc     *http.Client
	log    *slog.Logger

	// sleep waits between retries; tests replace it to observe delays.
	sleep func(ctx context.Context, d time.Duration) error
}

// New builds a client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.BaseURL) // validated above
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := newTransport(cfg)
	return &Client{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		origin: originOf(u),
		tr:     tr,
		hc: &http.Client{
			Transport: cfg.Metrics.wrap(tr),
			// Redirects are followed by the client itself, so it decides
			// per hop whether the token goes along (HF-PROTOCOL.md §2.2/§2.3).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:   log,
		sleep: sleepCtx,
	}, nil
}

// Close closes idle upstream connections. Bodies still open keep their
// connection until they are closed.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// URL is BaseURL followed by escapedPath (which starts with "/"). Callers use
// it to recognise upstream URLs, e.g. when rewriting Link headers.
func (c *Client) URL(escapedPath string) string { return c.base + escapedPath }

// sameOrigin reports whether rawURL is on the Hub's own origin (scheme, host
// and port), the only place a token may be sent.
func (c *Client) sameOrigin(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && originOf(u) == c.origin
}

// originOf is "scheme://host:port", lower-cased, with the default port explicit.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// header is the base header of a request the client builds itself: the
// user agent, Accept-Encoding: identity (sizes and bytes must be the raw
// ones, HF-PROTOCOL.md §11.8) and the token when rawURL is on the Hub's origin.
func (c *Client) header(rawURL, token string) http.Header {
	h := http.Header{}
	if c.cfg.UserAgent != "" {
		h.Set("User-Agent", c.cfg.UserAgent)
	}
	h.Set("Accept-Encoding", "identity")
	if token != "" && c.sameOrigin(rawURL) {
		h.Set("Authorization", "Bearer "+token)
	}
	return h
}

// checkToken rejects a token that cannot be sent as a header value, without
// echoing it.
func checkToken(token string) error {
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x21 || b == 0x7f {
			return fmt.Errorf("%w: token contains a control or space character", ErrUnauthorized)
		}
	}
	return nil
}

// redact is rawURL without credentials, query or fragment: signed CDN URLs
// carry their signature in the query.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable url>"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// resolveLocation turns the Location of a redirect from rawURL into an
// absolute URL, keeping its query string.
func resolveLocation(resp *http.Response, rawURL string) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%w: %d from %s without Location", ErrBadResponse, resp.StatusCode, redact(rawURL))
	}
	cur, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: bad request url %s", ErrBadResponse, redact(rawURL))
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("%w: unparsable Location from %s", ErrBadResponse, redact(rawURL))
	}
	next := cur.ResolveReference(ref)
	if next.Scheme != "http" && next.Scheme != "https" {
		return "", fmt.Errorf("%w: Location from %s has scheme %q", ErrBadResponse, redact(rawURL), next.Scheme)
	}
	return next.String(), nil
}

func isRedirect(status int) bool { return status >= 300 && status < 400 }
