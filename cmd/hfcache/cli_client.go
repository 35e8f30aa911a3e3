package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxAdminResponse bounds what the CLI reads from the admin API.
const maxAdminResponse = 32 << 20

// adminClient talks to one node's admin API.
type adminClient struct {
	base  string // "http://host:8081", no trailing slash
	token string
	http  *http.Client
}

func newAdminClient(base, token string, timeout time.Duration) *adminClient {
	return &adminClient{base: base, token: token, http: &http.Client{Timeout: timeout}}
}

// adminRequest is one call to the admin API.
type adminRequest struct {
	method  string
	path    string // "/v1/remotes/hf", already escaped
	body    any    // sent as JSON when non-nil
	ifMatch string // If-Match header when non-empty
	subject string // what the call is about, for errors: `remote "hf"`
	op      string // "create", "update", ... for error hints
}

// adminResponse is a 2xx answer.
type adminResponse struct {
	body  []byte
	index string // X-Hfcache-Index: the Raft index a write was applied at
}

func (c *adminClient) do(ctx context.Context, r adminRequest) (*adminResponse, error) {
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hfcache-cli/"+version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &reachError{addr: c.base, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return nil, &reachError{addr: c.base, err: err}
	}
	if resp.StatusCode/100 != 2 {
		return nil, newAPIError(resp, data, c.base, r)
	}
	return &adminResponse{body: data, index: resp.Header.Get("X-Hfcache-Index")}, nil
}

// decode parses a 2xx body, blaming the server (not the user) when it is not
// what the contract says.
func (c *adminClient) decode(resp *adminResponse, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("unexpected answer from the admin API at %s (is --addr the admin address?): %v", c.base, err)
	}
	return nil
}

// reachError is a request that got no HTTP answer: connection refused, DNS,
// timeout, reset.
type reachError struct {
	addr string
	err  error
}

func (e *reachError) Error() string {
	inner := e.err
	var ue *url.Error
	if errors.As(inner, &ue) {
		inner = ue.Err // drop `Get "http://...":`, the address is said already
	}
	return fmt.Sprintf("cannot reach hfcache admin API at %s: %v", e.addr, inner)
}

func (e *reachError) Unwrap() error { return e.err }

// apiError is a non-2xx answer, in the admin API's error shape.
type apiError struct {
	Status  int               `json:"-"`
	Message string            `json:"error"`
	Code    string            `json:"code"`
	Fields  map[string]string `json:"fields"`
	Leader  string            `json:"leader"`

	addr string
	req  adminRequest
}

func newAPIError(resp *http.Response, body []byte, addr string, req adminRequest) *apiError {
	e := &apiError{addr: addr, req: req}
	if json.Unmarshal(body, e) != nil || (e.Message == "" && e.Code == "") {
		e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	e.Status = resp.StatusCode
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if e.Leader == "" {
		e.Leader = resp.Header.Get("X-Hfcache-Leader")
	}
	return e
}

func (e *apiError) Error() string {
	subject := e.req.subject
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Code == "unauthorized":
		return "admin token missing or wrong (set HFCACHE_ADMIN_TOKEN)"
	case e.Code == "no_leader" || (e.Status == http.StatusServiceUnavailable && e.Code == ""):
		return "no Raft leader (is a majority of voters up?)\n  the node said: " + e.Message
	case e.Code == "not_leader":
		if e.Leader != "" {
			return fmt.Sprintf("%s is not the Raft leader and did not forward the request; the leader is %s (retry with --addr)", e.addr, e.Leader)
		}
		return fmt.Sprintf("%s is not the Raft leader and did not forward the request", e.addr)
	case e.Code == "not_found" && subject != "":
		return subject + " not found"
	case e.Code == "not_found":
		return "not found: " + e.Message
	case e.Status == http.StatusNotFound:
		return fmt.Sprintf("the admin API at %s has no %s (is --addr the admin address, and the node new enough?)", e.addr, e.req.path)
	case e.Status == http.StatusConflict || e.Code == "conflict":
		msg := e.Message
		if _, after, ok := strings.Cut(msg, "conflict: "); ok {
			msg = after // say "conflict" once
		}
		switch e.req.op {
		case "create":
			return fmt.Sprintf("conflict: %s (%s already exists: use update)", msg, subject)
		case "update":
			return fmt.Sprintf("conflict: %s (someone changed it: re-run update)", msg)
		}
		return "conflict: " + msg
	case e.Code == "validation" || e.Code == "bad_request" || e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity:
		if subject == "" {
			subject = "request"
		}
		if len(e.Fields) == 0 {
			return fmt.Sprintf("invalid %s: %s", subject, e.Message)
		}
		// One line per field; the message repeats them.
		var b strings.Builder
		fmt.Fprintf(&b, "invalid %s:", subject)
		for _, f := range slices.Sorted(maps.Keys(e.Fields)) {
			fmt.Fprintf(&b, "\n  %s: %s", f, e.Fields[f])
		}
		return b.String()
	case e.Code == "shutting_down":
		return fmt.Sprintf("the node at %s is shutting down: use another node's --addr", e.addr)
	}
	return fmt.Sprintf("the admin API at %s answered %d %s: %s", e.addr, e.Status, http.StatusText(e.Status), e.Message)
}
