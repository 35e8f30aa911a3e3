package hubclient

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

var sentinels = []error{
	ErrEntryNotFound, ErrRevisionNotFound, ErrRepoNotFound, ErrGatedRepo,
	ErrUnauthorized, ErrRateLimited, ErrUnreachable, ErrRangeIgnored, ErrBadResponse,
}

func TestHubErrorsMapToSentinels(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	tests := []struct {
		name       string
		repo       string
		rev        hf.Revision
		path       hf.Path
		token      string
		want       error
		status     int
		code       string
		message    string
		repoCommit string
	}{
		{"entry not found keeps the commit", "org/model", "main", "missing.txt", testToken,
			ErrEntryNotFound, 404, hf.CodeEntryNotFound, "Entry not found", testCommit},
		{"revision not found", "org/model", "nope", "config.json", testToken,
			ErrRevisionNotFound, 404, hf.CodeRevisionNotFound, "Invalid rev id: nope", ""},
		{"repo not found, anonymous", "org/private", "main", "config.json", "",
			ErrRepoNotFound, 401, hf.CodeRepoNotFound, "Repository not found", ""},
		{"repo not found, with token", "org/private", "main", "config.json", testToken,
			ErrRepoNotFound, 404, hf.CodeRepoNotFound, "Repository not found", ""},
		{"gated, anonymous", "org/gated", "main", "config.json", "",
			ErrGatedRepo, 401, hf.CodeGatedRepo, "Access to model org/gated is restricted. Please log in.", ""},
		{"gated, not approved", "org/gated", "main", "config.json", testToken,
			ErrGatedRepo, 403, hf.CodeGatedRepo, "Access to model org/gated is restricted and you are not in the authorized list.", ""},
		{"bad token", "org/model", "main", "badtoken.txt", testToken,
			ErrUnauthorized, 401, "", "Invalid credentials in Authorization header", ""},
		{"rate limited beyond the retry budget", "org/model", "main", "ratelimited.txt", testToken,
			ErrRateLimited, 429, "", "rate limited", ""},
	}
	for _, tt := range tests {
		for _, op := range []string{"HeadFile", "GetFile"} {
			t.Run(op+"/"+tt.name, func(t *testing.T) {
				before := len(f.hubRequests())
				var err error
				if op == "HeadFile" {
					_, err = c.HeadFile(ctxT(t), mustRepo(t, tt.repo), tt.rev, tt.path, tt.token)
				} else {
					_, err = c.GetFile(ctxT(t), mustRepo(t, tt.repo), tt.rev, tt.path, tt.token, "", 0, -1)
				}
				for _, s := range sentinels {
					if got := errors.Is(err, s); got != (s == tt.want) {
						t.Errorf("errors.Is(%v, %v) = %t", err, s, got)
					}
				}
				var he *Error
				if !errors.As(err, &he) {
					t.Fatalf("%T %v is not an *Error", err, err)
				}
				if he.Status != tt.status || he.Code != tt.code || he.Message != tt.message ||
					he.RepoCommit != tt.repoCommit || he.RequestID != "req-42" {
					t.Errorf("got %+v", *he)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("error message carries the token: %s", err)
				}
				if n := len(f.hubRequests()) - before; n != 1 {
					t.Errorf("%d requests, want 1 (no retry)", n)
				}
			})
		}
	}
}

func TestRateLimitedRetryAfter(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	_, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", "ratelimited.txt", "")
	var he *Error
	if !errors.As(err, &he) || he.RetryAfter != time.Hour {
		t.Fatalf("%v: want RetryAfter 1h from RateLimit t=3600", err)
	}
}

func TestErrorBodyMessages(t *testing.T) {
	tests := []struct {
		ctype, body, want string
	}{
		{"application/json", `{"error":"Repository not found"}`, "Repository not found"},
		{"application/json", `{"error":["a","b"]}`, "a\nb"},
		{"application/json", `{"error_description":"desc"}`, "desc"},
		{"application/json", `{"message":"msg"}`, "msg"},
		{"application/json", `{"errors":[{"message":"x"},{"message":"y"}]}`, "x\ny"},
		{"text/plain", "  plain text \n", "plain text"},
		{"text/html", "<html>oops</html>", ""},
		{"application/octet-stream", "\xff\xfe", ""},
	}
	for _, tt := range tests {
		if got := bodyMessage(tt.ctype, []byte(tt.body)); got != tt.want {
			t.Errorf("bodyMessage(%q, %q) = %q, want %q", tt.ctype, tt.body, got, tt.want)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{http.Header{"Ratelimit": {`"api";r=0;t=55`}}, 55 * time.Second},
		{http.Header{"Ratelimit": {`"api";r=3;t=55`}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{}, 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: 404, Code: hf.CodeEntryNotFound, Message: "Entry not found", RequestID: "r1"}
	want := "hub: 404 Not Found (EntryNotFound): Entry not found [request id r1]"
	if e.Error() != want {
		t.Errorf("%q, want %q", e.Error(), want)
	}
	for _, s := range []int{502, 503, 504} {
		if !errors.Is(&Error{Status: s}, ErrUnreachable) {
			t.Errorf("%d is not ErrUnreachable", s)
		}
	}
	if errors.Is(&Error{Status: 500}, ErrUnreachable) {
		t.Error("500 is ErrUnreachable")
	}
}
