package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/raftstore"
)

// FuzzParseRoute: any escaped path parses or fails cleanly, and what parses
// is valid by construction (no "..", no empty segments, valid UTF-8).
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/org/model/resolve/main/config.json", "/gpt2/resolve/main/a/b.bin", "/datasets/o/d/resolve/refs/convert/parquet/x",
		"/o/m/resolve/refs%2Fpr%2F1/sub%20dir/%C3%BC.txt", "/api/models/o/m/tree/main/a%2Fb", "/api/models/o/m/paths-info/main",
		"/o/m/resolve/main/%2e%2e/x", "//o//m//resolve//main//x", "/api/whoami-v2", "/o/m/resolve/main/%ff",
		"/v2/reconstructions/" + strings.Repeat("ab", 32), "/reconstruction/" + strings.Repeat("0", 64),
		"/xet/xorb/" + strings.Repeat("f", 64), "/api/models/o/m/xet-read-token/main", "/v1/reconstructions/XYZ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, err := parseRoute(p)
		if err != nil {
			return
		}
		if fr := rt.file; fr != nil {
			for _, seg := range strings.Split(string(fr.Path), "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("%q parsed to path %q", p, fr.Path)
				}
			}
			if !utf8.ValidString(string(fr.Path)) || !utf8.ValidString(string(fr.Rev)) {
				t.Fatalf("%q: invalid UTF-8 accepted", p)
			}
			if _, err := hf.NewRepo(fr.Repo.Type, fr.Repo.ID); err != nil {
				t.Fatalf("%q: invalid repo accepted: %v", p, err)
			}
		}
		if xr := rt.xet; xr != nil && (!hf.IsXetHash(xr.Hash) || (xr.Kind == "recon" && xr.Version != 1 && xr.Version != 2)) {
			t.Fatalf("%q: CAS route %+v", p, xr)
		}
	})
}

// FuzzParseRanges: ranges are within the representation and never panic.
func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-5", "bytes=10-", "bytes=0-1,5-9", "bytes=99999999999999999999-", "bytes=5-1", "bytes=-0"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		rs, err := parseRanges(h, size)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.start < 0 || r.end > size || r.start >= r.end {
				t.Fatalf("%q size %d: range %+v", h, size, r)
			}
		}
	})
}

// FuzzRewriteLink: rewritten Link headers point at the cache and keep
// every entry's parameters; Xet entries are dropped.
func FuzzRewriteLink(f *testing.F) {
	f.Add(`<https://huggingface.co/api/models/o/m/tree/main?cursor=abc>; rel="next"`)
	f.Add(`<https://huggingface.co/api/models/o/m/xet-read-token/c>; rel="xet-auth", <https://cas/x>; rel="xet-reconstruction-info"`)
	f.Add(`<>; rel="next", <relative>; x`)
	c := NewClient(Config{}, nil, Distribution{BasePath: "/hf"})
	f.Fuzz(func(t *testing.T, link string) {
		r := httptest.NewRequest("GET", "http://cache.lab:8080/hf/api/models/o/m/tree/main", nil)
		out := c.rewriteLink(r, Distribution{BasePath: "/hf"}, link)
		if strings.Contains(out, "xet-auth") && !strings.Contains(link, "xet-auth") {
			t.Fatalf("invented an entry: %q", out)
		}
		for _, e := range linkEntry.FindAllStringSubmatch(out, -1) {
			if strings.Contains(e[2], "xet-") {
				t.Fatalf("kept a Xet entry: %q", out)
			}
		}
	})
}

// FuzzAdminPut: any PUT body decodes to a command or to a bad request,
// never a panic, and never a command for another name.
func FuzzAdminPut(f *testing.F) {
	f.Add("remotes", `{"url":"https://x","token":"t","policy":"streamed","include":["a/*"]}`)
	f.Add("repositories", `{"remote":"default","warm":[{"type":"model","repo":"o/m"}],"quota":"1GiB"}`)
	f.Add("distributions", `{"base_path":"/hf","repository":"default","access":"caller"}`)
	f.Add("remotes", `{"name":"other","unknown":1}`)
	a := &admin{d: AdminDeps{Config: &fakeConfig{snap: raftstore.Snapshot{Remotes: map[string]raftstore.Remote{"x": {Name: "x", Token: "keep"}}}}}}
	f.Fuzz(func(t *testing.T, kind, body string) {
		if kind != "remotes" && kind != "repositories" && kind != "distributions" {
			return
		}
		cmd, err := a.putCommand(kind, "x", []byte(body))
		if err != nil {
			return
		}
		if cmd.ObjectName() != "x" {
			t.Fatalf("a PUT of x became a command for %q", cmd.ObjectName())
		}
	})
}
