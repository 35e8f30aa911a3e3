package hubclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestHeadFile(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	lfsLoc := f.cdnURL + "/blob/" + lfsSHA256 + "?sig=good&X-Amz-Expires=3600"

	tests := []struct {
		name     string
		repo     string
		rev      hf.Revision
		path     hf.Path
		want     FileMeta
		hubPaths []string // every request the Hub must have seen, in order
	}{
		{
			name: "regular file 200",
			repo: "org/model", rev: "main", path: "config.json",
			want: FileMeta{Commit: testCommit, ETag: configSHA1, Size: int64(len(configBody)),
				ContentType: "application/json", ContentDisposition: `inline; filename="config.json"`},
			hubPaths: []string{"/org/model/resolve/main/config.json"},
		},
		{
			name: "LFS 302 to another host",
			repo: "org/model", rev: "main", path: "model.safetensors",
			want: FileMeta{Commit: testCommit, ETag: lfsSHA256, LFS: true, Size: int64(len(lfsBody)),
				Location: lfsLoc},
			hubPaths: []string{"/org/model/resolve/main/model.safetensors"},
		},
		{
			name: "relative 307 rename then 302",
			repo: "old/model", rev: "main", path: "model.safetensors",
			want: FileMeta{Commit: testCommit, ETag: lfsSHA256, LFS: true, Size: int64(len(lfsBody)),
				Location: lfsLoc},
			hubPaths: []string{"/old/model/resolve/main/model.safetensors", "/org/model/resolve/main/model.safetensors"},
		},
		{
			name: "canonical single-segment id",
			repo: "gpt2", rev: "main", path: "model.safetensors",
			want: FileMeta{Commit: testCommit, ETag: lfsSHA256, LFS: true, Size: int64(len(lfsBody)),
				Location: lfsLoc},
			hubPaths: []string{"/gpt2/resolve/main/model.safetensors", "/org/model/resolve/main/model.safetensors"},
		},
		{
			name: "307 to resolve-cache keeps the query",
			repo: "org/model", rev: "main", path: "cached.txt",
			want: FileMeta{Commit: testCommit, ETag: configSHA1, Size: int64(len(configBody)),
				ContentType: "application/json", ContentDisposition: `inline; filename="config.json"`},
			hubPaths: []string{"/org/model/resolve/main/cached.txt", "/api/resolve-cache/models/org/model/" + testCommit + "/cached.txt"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.hubRequests())
			got, err := c.HeadFile(ctxT(t), mustRepo(t, tt.repo), tt.rev, tt.path, testToken)
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Errorf("meta\n got %+v\nwant %+v", *got, tt.want)
			}
			reqs := f.hubRequests()[before:]
			var paths []string
			for _, r := range reqs {
				paths = append(paths, r.Path)
				if r.Method != "HEAD" || r.Auth != "Bearer "+testToken || r.AcceptEncoding != "identity" {
					t.Errorf("hub saw %s %s auth=%t accept-encoding=%q", r.Method, r.Path, r.Auth != "", r.AcceptEncoding)
				}
			}
			if fmt.Sprint(paths) != fmt.Sprint(tt.hubPaths) {
				t.Errorf("hub paths %v, want %v", paths, tt.hubPaths)
			}
		})
	}
	if n := len(f.cdnRequests()); n != 0 {
		t.Errorf("HeadFile contacted the CDN %d times", n)
	}
}

func TestHeadFileBadResponse(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	for _, p := range []hf.Path{"nocommit.txt", "noetag.txt", "nosize.safetensors", "loop.txt"} {
		t.Run(string(p), func(t *testing.T) {
			_, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", p, "")
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("err = %v, want ErrBadResponse", err)
			}
		})
	}
}

func TestHeadFileNoToken(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	if _, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", ""); err != nil {
		t.Fatal(err)
	}
	if r := f.hubRequests()[0]; r.Header.Values("Authorization") != nil {
		t.Errorf("Authorization sent without a token: %d values", len(r.Header.Values("Authorization")))
	}
	_, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", "hf_bad\r\nX-Injected: 1")
	if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "hf_bad") {
		t.Errorf("malformed token: %v", err)
	}
}

func readAll(t *testing.T, b *Body) []byte {
	t.Helper()
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestGetFile(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	goodLoc := f.cdnURL + "/blob/" + lfsSHA256 + "?sig=good"
	expiredLoc := f.cdnURL + "/blob/" + lfsSHA256 + "?sig=expired"
	n := int64(len(lfsBody))

	tests := []struct {
		name       string
		path       hf.Path
		loc        string
		off, end   int64
		wantStatus int
		wantBody   []byte
		wantSize   int64
		wantRange  string // Range header the last request carried
		wantCDN    int    // requests the CDN must have seen
		wantHub    int    // requests the Hub must have seen
	}{
		{"regular whole file", "config.json", "", 0, -1, 200, configBody, int64(len(configBody)), "", 0, 1},
		{"regular range", "config.json", "", 5, 10, 206, configBody[5:10], int64(len(configBody)), "bytes=5-9", 0, 1},
		{"regular open range", "config.json", "", 5, -1, 206, configBody[5:], int64(len(configBody)), "bytes=5-", 0, 1},
		{"regular end past EOF is clamped", "config.json", "", 5, 1 << 40, 206, configBody[5:], int64(len(configBody)), "bytes=5-1099511627775", 0, 1},
		{"LFS via the Hub's 302", "model.safetensors", "", 0, -1, 200, lfsBody, n, "", 1, 1},
		{"LFS range via the Hub's 302", "model.safetensors", "", 100, 200, 206, lfsBody[100:200], n, "bytes=100-199", 1, 1},
		{"LFS from a CDN location", "model.safetensors", goodLoc, 1000, -1, 206, lfsBody[1000:], n, "bytes=1000-", 1, 0},
		{"expired CDN location falls back to the Hub", "model.safetensors", expiredLoc, 7, 17, 206, lfsBody[7:17], n, "bytes=7-16", 2, 1},
		{"200 to a range from 0 is returned", "norange.bin", "", 0, 10, 200, lfsBody, n, "bytes=0-9", 0, 1},
		{"gzip is not decoded", "gzip.txt", "", 0, -1, 200, nil, -2, "", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hubBefore, cdnBefore := len(f.hubRequests()), len(f.cdnRequests())
			b, err := c.GetFile(ctxT(t), mustRepo(t, "org/model"), "main", tt.path, testToken, tt.loc, tt.off, tt.end)
			if err != nil {
				t.Fatal(err)
			}
			data := readAll(t, b)
			if b.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", b.Status, tt.wantStatus)
			}
			if tt.wantBody == nil { // gzip: the raw compressed bytes
				if b.Header.Get("Content-Encoding") != "gzip" {
					t.Errorf("Content-Encoding %q", b.Header.Get("Content-Encoding"))
				}
				zr, err := gzip.NewReader(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("body is not the gzip stream: %v", err)
				}
				plain, _ := io.ReadAll(zr)
				if !bytes.Equal(plain, configBody) {
					t.Errorf("gzip content differs")
				}
				if b.Size != int64(len(data)) {
					t.Errorf("size %d, want compressed length %d", b.Size, len(data))
				}
			} else {
				if !bytes.Equal(data, tt.wantBody) {
					t.Errorf("body %d bytes, want %d", len(data), len(tt.wantBody))
				}
				if b.Size != tt.wantSize {
					t.Errorf("size %d, want %d", b.Size, tt.wantSize)
				}
			}
			hub, cdn := f.hubRequests()[hubBefore:], f.cdnRequests()[cdnBefore:]
			if len(hub) != tt.wantHub || len(cdn) != tt.wantCDN {
				t.Errorf("hub saw %d requests, CDN %d; want %d and %d", len(hub), len(cdn), tt.wantHub, tt.wantCDN)
			}
			for _, r := range hub {
				if r.Auth != "Bearer "+testToken {
					t.Errorf("hub request %s without the token", r.Path)
				}
			}
			all := append(hub, cdn...)
			for _, r := range all {
				if r.AcceptEncoding != "identity" || r.Range != tt.wantRange {
					t.Errorf("%s: Accept-Encoding %q Range %q, want identity and %q", r.Path, r.AcceptEncoding, r.Range, tt.wantRange)
				}
			}
		})
	}
	for _, r := range f.cdnRequests() {
		if len(r.Header.Values("Authorization")) != 0 {
			t.Errorf("the CDN received an Authorization header (%s)", r.Path)
		}
	}
}

func TestGetFileRangeErrors(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	repo := mustRepo(t, "org/model")

	_, err := c.GetFile(ctxT(t), repo, "main", "norange.bin", "", "", 5, -1)
	if !errors.Is(err, ErrRangeIgnored) {
		t.Errorf("200 to bytes=5-: %v, want ErrRangeIgnored", err)
	}
	_, err = c.GetFile(ctxT(t), repo, "main", "badrange.bin", "", "", 100, 200)
	if !errors.Is(err, ErrBadResponse) {
		t.Errorf("206 for the wrong range: %v, want ErrBadResponse", err)
	}
	_, err = c.GetFile(ctxT(t), repo, "main", "config.json", "", "", 1<<20, -1)
	var he *Error
	if !errors.As(err, &he) || he.Status != 416 {
		t.Errorf("range past EOF: %v, want a 416 *Error", err)
	}
	for _, r := range [][2]int64{{-1, -1}, {5, 5}, {5, 3}, {0, -2}} {
		if _, err := c.GetFile(ctxT(t), repo, "main", "config.json", "", "", r[0], r[1]); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("range %v: %v, want ErrInvalidRange", r, err)
		}
	}
	_, err = c.GetFile(ctxT(t), repo, "main", "missing.txt", testToken, "", 0, -1)
	if !errors.Is(err, ErrEntryNotFound) || !errors.As(err, &he) || he.RepoCommit != testCommit {
		t.Errorf("missing file: %v", err)
	}
}

// clientGoroutines lists goroutines that belong to a Client: its
// connections and its body watchdogs.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "net/http.(*persistConn)") || strings.Contains(g, "hubclient.(*stallBody)") {
			out = append(out, g)
		}
	}
	return out
}

func TestGetFileStall(t *testing.T) {
	f := newFakeHub(t)
	c := f.client(func(cfg *Config) { cfg.StallTimeout = 100 * time.Millisecond })

	b, err := c.GetFile(ctxT(t), mustRepo(t, "org/model"), "main", "stall.bin", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	// A download completed meanwhile leaves an idle connection, which Close must end.
	ok, err := c.GetFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, ok)
	got := make([]byte, 100)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	_, err = b.Read(make([]byte, 10))
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of a stalled body: %v, want ErrUnreachable and ErrDeadlineExceeded", err)
	}
	b.Close()
	c.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		left := clientGoroutines()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left behind:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGetFileCallerCancel(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	ctx, cancel := context.WithCancel(ctxT(t))
	b, err := c.GetFile(ctx, mustRepo(t, "org/model"), "main", "stall.bin", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	io.ReadFull(b, make([]byte, 100))
	cancel()
	_, err = b.Read(make([]byte, 10))
	if errors.Is(err, ErrUnreachable) || err == nil {
		t.Errorf("read after the caller cancelled: %v, want the context's error", err)
	}
}

func TestGetFileSlowConsumerIsNotAStall(t *testing.T) {
	f := newFakeHub(t)
	c := f.client(func(cfg *Config) { cfg.StallTimeout = 200 * time.Millisecond })
	b, err := c.GetFile(ctxT(t), mustRepo(t, "org/model"), "main", "model.safetensors", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(b, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // the consumer dawdles, upstream does not
	rest, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read after a pause: %v", err)
	}
	if !bytes.Equal(append(head, rest...), lfsBody) {
		t.Error("body differs")
	}
}
