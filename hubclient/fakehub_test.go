package hubclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// The fake Hub's content.
const (
	testCommit = "0123456789abcdef0123456789abcdef01234567"
	testToken  = "hf_SecretTestToken123"
)

var (
	configBody = []byte(`{"architectures": ["GPT2LMHeadModel"], "n_layer": 12}` + "\n")
	configSHA1 = hf.GitBlobSHA1(configBody)
	lfsBody    = bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	lfsSHA256  = hf.SHA256Hex(lfsBody)
)

// seen is one request as a server saw it.
type seen struct {
	Method, Path, Query, Auth, AcceptEncoding, Range string
	Header                                           http.Header
	Body                                             string
}

// fakeHub is an in-test Hub on 127.0.0.1 plus a CDN on "localhost" (another
// origin), recording every request.
type fakeHub struct {
	t      *testing.T
	hub    *httptest.Server
	cdn    *httptest.Server
	cdnURL string // http://localhost:port

	mu      sync.Mutex
	hubSeen []seen
	cdnSeen []seen

	// flaky: the next failN requests to /org/flaky/... answer failStatus
	// (with failRetryAfter as Retry-After when set).
	failN          int
	failStatus     int
	failRetryAfter string

	release chan struct{} // closed at cleanup, unblocks stalled handlers
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	f := &fakeHub{t: t, release: make(chan struct{})}
	f.hub = httptest.NewServer(http.HandlerFunc(f.serveHub))
	f.cdn = httptest.NewServer(http.HandlerFunc(f.serveCDN))
	u, _ := url.Parse(f.cdn.URL)
	f.cdnURL = "http://localhost:" + u.Port()
	t.Cleanup(func() {
		close(f.release)
		f.hub.Close()
		f.cdn.Close()
	})
	return f
}

// client is a Client on the fake Hub with tight timings; mutate tweaks its config.
func (f *fakeHub) client(mutate ...func(*Config)) *Client {
	f.t.Helper()
	return newTestClient(f.t, f.hub.URL, mutate...)
}

func newTestClient(t *testing.T, base string, mutate ...func(*Config)) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BaseURL = base
	cfg.ConnectTimeout = 2 * time.Second
	cfg.HeaderTimeout = 5 * time.Second
	cfg.StallTimeout = 5 * time.Second
	cfg.RetryBase = time.Millisecond
	cfg.RetryMaxDelay = 5 * time.Second
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func record(mu *sync.Mutex, into *[]seen, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mu.Lock()
	defer mu.Unlock()
	*into = append(*into, seen{
		Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), AcceptEncoding: r.Header.Get("Accept-Encoding"),
		Range: r.Header.Get("Range"), Header: r.Header.Clone(), Body: string(body),
	})
}

func (f *fakeHub) hubRequests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.hubSeen...)
}

func (f *fakeHub) cdnRequests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.cdnSeen...)
}

func (f *fakeHub) setFlaky(n, status int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failN, f.failStatus, f.failRetryAfter = n, status, retryAfter
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set(hf.HeaderErrorCode, code)
	}
	if msg != "" {
		w.Header().Set(hf.HeaderErrorMessage, msg)
	}
	w.Header().Set(hf.HeaderRequestID, "req-42")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// serveRegular serves a regular git file the way the Hub does (§2.1a).
func serveRegular(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set(hf.HeaderRepoCommit, testCommit)
	w.Header().Set("ETag", `"`+hf.GitBlobSHA1(body)+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `inline; filename="config.json"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// lfsRedirect answers an LFS file with a 302 to the CDN (§2.1b).
func (f *fakeHub) lfsRedirect(w http.ResponseWriter, withSize bool) {
	h := w.Header()
	h.Set("Location", f.cdnURL+"/blob/"+lfsSHA256+"?sig=good&X-Amz-Expires=3600")
	h.Set(hf.HeaderRepoCommit, testCommit)
	h.Set(hf.HeaderLinkedETag, `"`+lfsSHA256+`"`)
	if withSize {
		h.Set(hf.HeaderLinkedSize, fmt.Sprint(len(lfsBody)))
	}
	h.Set("ETag", `"redirect-body-etag"`)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusFound)
	io.WriteString(w, "Found. Redirecting to the CDN")
}

func (f *fakeHub) serveHub(w http.ResponseWriter, r *http.Request) {
	record(&f.mu, &f.hubSeen, r)
	authed := r.Header.Get("Authorization") == "Bearer "+testToken
	p := r.URL.EscapedPath()
	switch p {
	case "/org/model/resolve/main/config.json", "/org/model/resolve/" + testCommit + "/config.json":
		serveRegular(w, r, configBody)
	case "/org/model/resolve/main/model.safetensors":
		f.lfsRedirect(w, true)
	case "/org/model/resolve/main/nosize.safetensors":
		f.lfsRedirect(w, false)
	case "/gpt2/resolve/main/model.safetensors", "/old/model/resolve/main/model.safetensors":
		w.Header().Set("Location", "/org/model/resolve/main/model.safetensors")
		w.WriteHeader(http.StatusTemporaryRedirect)
	case "/org/model/resolve/main/cached.txt":
		loc := "/api/resolve-cache/models/org/model/" + testCommit + "/cached.txt?" +
			"%2Forg%2Fmodel%2Fresolve%2Fmain%2Fcached.txt=&etag=%22" + configSHA1 + "%22"
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusTemporaryRedirect)
	case "/api/resolve-cache/models/org/model/" + testCommit + "/cached.txt":
		if r.URL.Query().Get("etag") != `"`+configSHA1+`"` {
			hubError(w, http.StatusBadRequest, "", "missing etag")
			return
		}
		serveRegular(w, r, configBody)
	case "/org/model/resolve/main/loop.txt":
		w.Header().Set("Location", "/org/model/resolve/main/loop.txt")
		w.WriteHeader(http.StatusTemporaryRedirect)
	case "/org/model/resolve/main/nocommit.txt":
		w.Header().Set("ETag", `"`+configSHA1+`"`)
		w.Write(configBody)
	case "/org/model/resolve/main/noetag.txt":
		w.Header().Set(hf.HeaderRepoCommit, testCommit)
		w.Write(configBody)
	case "/org/model/resolve/main/missing.txt":
		w.Header().Set(hf.HeaderRepoCommit, testCommit)
		hubError(w, http.StatusNotFound, hf.CodeEntryNotFound, "Entry not found")
	case "/org/model/resolve/nope/config.json":
		hubError(w, http.StatusNotFound, hf.CodeRevisionNotFound, "Invalid rev id: nope")
	case "/org/private/resolve/main/config.json":
		if authed {
			hubError(w, http.StatusNotFound, hf.CodeRepoNotFound, "Repository not found")
		} else {
			hubError(w, http.StatusUnauthorized, hf.CodeRepoNotFound, "Repository not found")
		}
	case "/org/gated/resolve/main/config.json":
		if authed {
			hubError(w, http.StatusForbidden, hf.CodeGatedRepo, "Access to model org/gated is restricted and you are not in the authorized list.")
		} else {
			hubError(w, http.StatusUnauthorized, hf.CodeGatedRepo, "Access to model org/gated is restricted. Please log in.")
		}
	case "/org/model/resolve/main/badtoken.txt":
		hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
	case "/org/model/resolve/main/ratelimited.txt":
		w.Header().Set("RateLimit", `"api";r=0;t=3600`)
		hubError(w, http.StatusTooManyRequests, "", "rate limited")
	case "/org/model/resolve/main/gzip.txt":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(configBody)
		zw.Close()
		w.Header().Set(hf.HeaderRepoCommit, testCommit)
		w.Header().Set("ETag", `"`+configSHA1+`"`)
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
		w.Write(buf.Bytes())
	case "/org/model/resolve/main/norange.bin":
		w.Header().Set("Content-Length", fmt.Sprint(len(lfsBody)))
		w.Write(lfsBody)
	case "/org/model/resolve/main/badrange.bin":
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", len(lfsBody)))
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(lfsBody[:10])
	case "/org/model/resolve/main/stall.bin":
		w.Header().Set("Content-Length", fmt.Sprint(len(lfsBody)))
		w.Write(lfsBody[:100])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
	case "/org/flaky/resolve/main/config.json", "/api/models/org/flaky":
		f.mu.Lock()
		fail := f.failN > 0
		if fail {
			f.failN--
		}
		status, ra := f.failStatus, f.failRetryAfter
		f.mu.Unlock()
		if fail {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			hubError(w, status, "", "try again")
			return
		}
		if strings.HasPrefix(p, "/api/") {
			io.WriteString(w, `{"id":"org/flaky"}`)
			return
		}
		serveRegular(w, r, configBody)

	// API routes.
	case "/api/models/org/model", "/api/models/org/model/revision/main",
		"/api/models/org/model/paths-info/main":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "1")
		json.NewEncoder(w).Encode(map[string]string{"id": "org/model", "sha": testCommit, "method": r.Method})
	case "/api/models/old/model", "/api/models/old/model/paths-info/main":
		w.Header().Set("Location", strings.Replace(p, "/old/", "/org/", 1)+"?"+r.URL.RawQuery)
		w.WriteHeader(http.StatusTemporaryRedirect)
	case "/api/models/org/model/elsewhere":
		w.Header().Set("Location", f.cdnURL+"/somewhere")
		w.WriteHeader(http.StatusFound)
	case "/api/models/org/model/listerror":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error": ["first problem", "second problem"]}`)
	case "/api/models/org/model/texterror":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "  plain failure \n")
	case "/api/models/org/model/htmlerror":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "<html><body>nope</body></html>")
	case "/api/models/org/model/gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(configBody)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(buf.Bytes())
	default:
		hubError(w, http.StatusNotFound, hf.CodeRepoNotFound, "Repository not found")
	}
}

func (f *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	record(&f.mu, &f.cdnSeen, r)
	if r.URL.Path != "/blob/"+lfsSHA256 {
		http.NotFound(w, r)
		return
	}
	switch r.URL.Query().Get("sig") {
	case "good":
		w.Header().Set("ETag", `"cdn-etag"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(lfsBody))
	default:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
	}
}

func mustRepo(t *testing.T, id string) hf.Repo {
	t.Helper()
	r, err := hf.NewRepo(hf.Model, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
