package fakehub

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

const (
	modelID  = "org/model"
	tokAlice = "hf_alice"
	tokBob   = "hf_bob"
)

var (
	configJSON = []byte(`{"model_type": "gpt2"}` + "\n")
	unicodeTxt = []byte("unicode content\n")
)

// fixture starts a Hub with a model repo of varied files and two users.
func fixture(t *testing.T) (*Hub, string) {
	t.Helper()
	h := New()
	commit := h.AddRepo(RepoSpec{Type: hf.Model, ID: modelID, Files: []File{
		{Path: "config.json", Data: configJSON},
		{Path: "sub dir/ünïcode file+1.txt", Data: unicodeTxt},
		{Path: "tokenizer/vocab.txt", Data: []byte("a\nb\nc\n")},
		{Path: "model.safetensors", Size: 3<<20 + 17, Seed: 7, LFS: true},
		{Path: "xet.bin", Size: 100 << 10, Seed: 8, Xet: true},
		{Path: "empty.txt", Data: []byte{}},
		{Path: "big.bin", Size: 1<<20 + 3, Seed: 9},
	}})
	h.AddToken(tokAlice, "alice")
	h.AddToken(tokBob, "bob")
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, commit
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type resp struct {
	*http.Response
	body []byte
}

// do sends a request; headers are "Key: value" strings.
func do(t *testing.T, c *http.Client, method, url string, body io.Reader, headers ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ": ")
		req.Header.Set(k, v)
	}
	if c == nil {
		c = noRedirect
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp{res, b}
}

func get(t *testing.T, url string, headers ...string) resp {
	t.Helper()
	return do(t, nil, http.MethodGet, url, nil, headers...)
}

func head(t *testing.T, url string, headers ...string) resp {
	t.Helper()
	return do(t, nil, http.MethodHead, url, nil, headers...)
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

// wantStatus fails unless the response has the status.
func (r resp) wantStatus(t *testing.T, status int) resp {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; headers %v; body %q", r.Request.Method, r.Request.URL, r.StatusCode, status, r.Header, r.body)
	}
	return r
}

// wantHeader fails unless header k is v.
func (r resp) wantHeader(t *testing.T, k, v string) resp {
	t.Helper()
	if got := r.Header.Get(k); got != v {
		t.Fatalf("%s %s: %s = %q, want %q", r.Request.Method, r.Request.URL, k, got, v)
	}
	return r
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s %s: %v in %q", r.Request.Method, r.Request.URL, err, r.body)
	}
}

func (r resp) wantBody(t *testing.T, want []byte) {
	t.Helper()
	if !bytes.Equal(r.body, want) {
		t.Fatalf("%s %s: body %d bytes %.40q, want %d bytes %.40q", r.Request.Method, r.Request.URL, len(r.body), r.body, len(want), want)
	}
}

// wantError checks the Hub's error shape.
func (r resp) wantError(t *testing.T, status int, code string) resp {
	t.Helper()
	r.wantStatus(t, status)
	r.wantHeader(t, hf.HeaderErrorCode, code)
	if r.Header.Get(hf.HeaderErrorMessage) == "" || r.Header.Get(hf.HeaderRequestID) == "" {
		t.Fatalf("%s: missing X-Error-Message or X-Request-Id: %v", r.Request.URL, r.Header)
	}
	if r.Request.Method != http.MethodHead {
		var e struct{ Error string }
		r.json(t, &e)
		if e.Error != r.Header.Get(hf.HeaderErrorMessage) {
			t.Fatalf("%s: body error %q != X-Error-Message %q", r.Request.URL, e.Error, r.Header.Get(hf.HeaderErrorMessage))
		}
	}
	return r
}

// readAll reads a whole ReaderAt of size n.
func readAll(t *testing.T, ra io.ReaderAt, n int64) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
