package hubclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// retryableStatus is what huggingface_hub's http_backoff retries (§5.3).
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// roundTrip sends one request (no redirect following) and returns the
// response with its body open. With retry set it retries connection errors
// and retryable statuses up to MaxRetries times, honouring Retry-After; the
// last retryable response is returned as is for the caller to turn into an
// *Error. Connection errors come back wrapping ErrUnreachable; a cancelled
// ctx comes back as the context's error.
func (c *Client) roundTrip(ctx context.Context, method, rawURL string, hdr http.Header, body []byte, retry bool) (*http.Response, error) {
	attempts := 1
	if retry {
		attempts += c.cfg.MaxRetries
	}
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			// The error text of url.Parse names the URL; report it redacted.
			return nil, fmt.Errorf("hubclient: cannot build %s request for %s", method, redact(rawURL))
		}
		req.Header = hdr.Clone()
		last := attempt+1 >= attempts

		resp, err := c.hc.Do(req)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("hubclient: %s %s: %w", method, redact(rawURL), ctxErr)
			}
			err = unreachable(method, rawURL, err)
			if last {
				return nil, err
			}
			d := c.backoff(attempt)
			c.log.Warn("upstream request failed, retrying", "method", method, "url", redact(rawURL),
				"attempt", attempt+1, "delay", d, "err", err)
			if err := c.sleep(ctx, d); err != nil {
				return nil, fmt.Errorf("hubclient: %s %s: %w", method, redact(rawURL), err)
			}
			continue
		}
		if last || !retryableStatus(resp.StatusCode) {
			return resp, nil
		}
		d := c.backoff(attempt)
		if ra := retryAfter(resp.Header, time.Now()); ra > 0 {
			if ra > c.cfg.RetryMaxDelay {
				// Waiting that long would hold the caller; let it decide.
				return resp, nil
			}
			d = ra
		}
		discard(resp)
		c.log.Warn("upstream answered a retryable status, retrying", "method", method, "url", redact(rawURL),
			"status", resp.StatusCode, "attempt", attempt+1, "delay", d)
		if err := c.sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("hubclient: %s %s: %w", method, redact(rawURL), err)
		}
	}
}

// unreachable wraps a transport error in ErrUnreachable without the URL's
// query (url.Error would print the whole, possibly signed, URL).
func unreachable(method, rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, redact(rawURL), err)
}

// backoff is the delay before retry number attempt+1: RetryBase doubled per
// attempt, capped at RetryMaxDelay, with "equal jitter" (half fixed, half random).
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryMaxDelay
	if attempt < 32 {
		if b := c.cfg.RetryBase << attempt; b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter is how long the Hub asks to wait: Retry-After (seconds or an
// HTTP date), else the reset of an exhausted RateLimit (`"api";r=0;t=55`).
// 0 when the response says nothing.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			return time.Duration(min(s, 1<<30)) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if v := h.Get("RateLimit"); v != "" {
		var remaining, reset int64 = -1, -1
		for _, p := range strings.Split(v, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			switch strings.TrimSpace(k) {
			case "r":
				remaining = n
			case "t":
				reset = n
			}
		}
		if remaining == 0 && reset > 0 {
			return time.Duration(min(reset, 1<<30)) * time.Second
		}
	}
	return 0
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// discard drains a little of a body, so the connection can be reused, and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
