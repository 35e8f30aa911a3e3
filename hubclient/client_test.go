package hubclient

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := Config{BaseURL: "ftp://user:pw@/x?q=1", MaxRetries: -1, UserAgent: "a\nb"}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"scheme", "no host", "credentials", "query", "ConnectTimeout",
		"HeaderTimeout", "StallTimeout", "RetryBase", "RetryMaxDelay", "MaxRetries", "UserAgent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problem %q not reported in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("credentials echoed: %v", err)
	}
	if _, err := New(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New accepted a bad config: %v", err)
	}
}

func TestURLAndPathPrefix(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.EscapedPath())
		if r.URL.EscapedPath() == "/mirror/org/model/resolve/refs%2Fpr%2F1/sub%20dir/f%C3%BC.txt" {
			w.Header().Set("X-Repo-Commit", testCommit)
			w.Header().Set("ETag", `W/"`+configSHA1+`"`)
			w.Header().Set("Content-Length", "3")
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/mirror/")
	if u := c.URL("/api/models/x"); u != srv.URL+"/mirror/api/models/x" {
		t.Errorf("URL = %q", u)
	}
	m, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "refs/pr/1", "sub dir/fü.txt", "")
	if err != nil {
		t.Fatalf("%v (server saw %v)", err, got)
	}
	if m.ETag != configSHA1 || m.Size != 3 || m.LFS {
		t.Errorf("meta %+v", *m)
	}
}

func TestSameOrigin(t *testing.T) {
	c := newTestClient(t, "https://huggingface.co/prefix")
	for u, want := range map[string]bool{
		"https://huggingface.co/x":      true,
		"https://HuggingFace.co:443/x":  true,
		"http://huggingface.co/x":       false,
		"https://huggingface.co:8443/x": false,
		"https://cdn-lfs.hf.co/x":       false,
	} {
		if got := c.sameOrigin(u); got != want {
			t.Errorf("sameOrigin(%s) = %t", u, got)
		}
	}
	if r := redact("https://u:p@cdn.hf.co/blob?X-Amz-Signature=abc#f"); r != "https://cdn.hf.co/blob" {
		t.Errorf("redact = %q", r)
	}
}

func TestHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newTestClient(t, srv.URL, func(cfg *Config) {
		cfg.HeaderTimeout = 50 * time.Millisecond
		cfg.MaxRetries = 1
	})
	recordSleeps(c)
	_, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", "")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
}
