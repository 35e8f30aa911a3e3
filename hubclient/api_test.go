package hubclient

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestDo(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()

	tests := []struct {
		name       string
		method     string
		path       string
		query      string
		body       string
		wantStatus int
		wantMethod string   // method the final request used
		hubPaths   []string // requests the Hub saw
		wantQuery  string   // query of the final request
	}{
		{"GET with query", "GET", "/api/models/org/model/revision/main", "expand=sha&expand=private", "",
			200, "GET", []string{"/api/models/org/model/revision/main"}, "expand=sha&expand=private"},
		{"same-host redirect is followed", "GET", "/api/models/old/model", "blobs=true", "",
			200, "GET", []string{"/api/models/old/model", "/api/models/org/model"}, "blobs=true"},
		{"307 keeps POST and body", "POST", "/api/models/old/model/paths-info/main", "", "paths=config.json&expand=False",
			200, "POST", []string{"/api/models/old/model/paths-info/main", "/api/models/org/model/paths-info/main"}, ""},
		{"cross-host redirect is returned", "GET", "/api/models/org/model/elsewhere", "", "",
			302, "GET", []string{"/api/models/org/model/elsewhere"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.hubRequests())
			hdr := http.Header{
				"Authorization":   {"Bearer " + testToken},
				"Accept":          {"application/json"},
				"Content-Type":    {"application/x-www-form-urlencoded"},
				"Accept-Encoding": {"gzip, br"},
				"Connection":      {"keep-alive, X-Hop"},
				"X-Hop":           {"1"},
				"Keep-Alive":      {"timeout=5"},
				"Te":              {"trailers"},
				"Content-Length":  {"999"},
			}
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			resp, err := c.Do(ctxT(t), tt.method, tt.path, tt.query, hdr, body)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				var j map[string]string
				if err := json.Unmarshal(data, &j); err != nil || j["method"] != tt.wantMethod {
					t.Errorf("body %q (%v)", data, err)
				}
				if resp.Header.Get("X-Upstream-Hop") != "" || resp.Header.Get("Connection") != "" {
					t.Errorf("hop-by-hop response headers kept: %v", resp.Header)
				}
			} else if !strings.HasPrefix(resp.Header.Get("Location"), f.cdnURL) {
				t.Errorf("Location %q", resp.Header.Get("Location"))
			}
			reqs := f.hubRequests()[before:]
			if len(reqs) != len(tt.hubPaths) {
				t.Fatalf("hub saw %d requests, want %v", len(reqs), tt.hubPaths)
			}
			for i, r := range reqs {
				if r.Path != tt.hubPaths[i] {
					t.Errorf("request %d path %s, want %s", i, r.Path, tt.hubPaths[i])
				}
				if r.Method != tt.method || r.Body != tt.body {
					t.Errorf("request %d: %s with body %q", i, r.Method, r.Body)
				}
				if r.Auth != "Bearer "+testToken || r.Header.Get("Accept") != "application/json" ||
					r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
					t.Errorf("request %d lost caller headers: %v", i, r.Header)
				}
				if r.AcceptEncoding != "identity" {
					t.Errorf("request %d Accept-Encoding %q", i, r.AcceptEncoding)
				}
				for _, h := range []string{"X-Hop", "Keep-Alive", "Te"} {
					if r.Header.Get(h) != "" {
						t.Errorf("hop-by-hop %s forwarded", h)
					}
				}
				if r.Header.Get("User-Agent") != "hfcache" {
					t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
				}
			}
			if last := reqs[len(reqs)-1]; last.Query != tt.wantQuery {
				t.Errorf("final query %q, want %q", last.Query, tt.wantQuery)
			}
		})
	}
	if n := len(f.cdnRequests()); n != 0 {
		t.Errorf("Do followed a cross-host redirect (%d CDN requests)", n)
	}
}

func TestDoErrors(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	recordSleeps(c)
	tests := []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/models/org/model/listerror", 400, "first problem\nsecond problem"},
		{"/api/models/org/model/texterror", 500, "plain failure"},
		{"/api/models/org/model/htmlerror", 403, ""},
		{"/api/models/nobody/nothing", 404, "Repository not found"},
	}
	for _, tt := range tests {
		_, err := c.Do(ctxT(t), "GET", tt.path, "", nil, nil)
		var he *Error
		if !errors.As(err, &he) || he.Status != tt.status || he.Message != tt.msg {
			t.Errorf("%s: %v (%+v)", tt.path, err, he)
		}
	}
	if _, err := c.Do(ctxT(t), "GET", "api/no-slash", "", nil, nil); err == nil {
		t.Error("a path without a leading / was accepted")
	}
}

func TestDoGzipIsNotDecoded(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	resp, err := c.Do(ctxT(t), "GET", "/api/models/org/model/gzip", "", http.Header{"Accept-Encoding": {"gzip"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Uncompressed {
		t.Fatalf("Content-Encoding %q, Uncompressed %t", resp.Header.Get("Content-Encoding"), resp.Uncompressed)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not the raw gzip stream: %v", err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, configBody) {
		t.Error("gzip content differs")
	}
}
