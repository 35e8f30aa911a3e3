package httpapi

import (
	"errors"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestParseFileRoutes(t *testing.T) {
	cases := []struct {
		path              string
		typ               hf.RepoType
		id, kind, rev, fp string
	}{
		{"/org/model/resolve/main/config.json", hf.Model, "org/model", "resolve", "main", "config.json"},
		{"/gpt2/resolve/main/config.json", hf.Model, "gpt2", "resolve", "main", "config.json"},
		{"/datasets/org/data/resolve/main/a/b.parquet", hf.Dataset, "org/data", "resolve", "main", "a/b.parquet"},
		{"/spaces/org/app/raw/main/app.py", hf.Space, "org/app", "raw", "main", "app.py"},
		{"/kernels/org/k/resolve/v1/build.toml", hf.Kernel, "org/k", "resolve", "v1", "build.toml"},
		{"/org/model/resolve/refs%2Fpr%2F1/config.json", hf.Model, "org/model", "resolve", "refs/pr/1", "config.json"},
		{"/org/model/resolve/refs/pr/12/config.json", hf.Model, "org/model", "resolve", "refs/pr/12", "config.json"},
		{"/datasets/org/data/resolve/refs/convert/parquet/default/train/0.parquet", hf.Dataset, "org/data", "resolve", "refs/convert/parquet", "default/train/0.parquet"},
		{"/org/model/resolve/feature%2Fx/config.json", hf.Model, "org/model", "resolve", "feature/x", "config.json"},
		{"/org/model/resolve/main/sub%20dir/%C3%BCn%C3%AFcode%20file.txt", hf.Model, "org/model", "resolve", "main", "sub dir/ünïcode file.txt"},
		{"/org/model/resolve/main/a%2Bb.bin", hf.Model, "org/model", "resolve", "main", "a+b.bin"},
		{"/org/model/resolve/main/a%20b/c.txt", hf.Model, "org/model", "resolve", "main", "a b/c.txt"},
		{"/org//model/resolve/main//dir/c.txt", hf.Model, "org/model", "resolve", "main", "dir/c.txt"},
		{"/org/model/resolve/main/a+b.bin", hf.Model, "org/model", "resolve", "main", "a+b.bin"},
		{"//org/model//resolve/main//config.json", hf.Model, "org/model", "resolve", "main", "config.json"},
		// A repo literally named "resolve" in namespace "org" still parses as a two-segment id.
		{"/org/resolve/resolve/main/x", hf.Model, "org/resolve", "resolve", "main", "x"},
	}
	for _, c := range cases {
		rt, err := parseRoute(c.path)
		if err != nil || rt.file == nil {
			t.Errorf("%s: %v (%+v)", c.path, err, rt)
			continue
		}
		f := rt.file
		if f.Repo.Type != c.typ || f.Repo.ID != c.id || f.Kind != c.kind || string(f.Rev) != c.rev || string(f.Path) != c.fp {
			t.Errorf("%s: got %+v", c.path, f)
		}
	}
}

func TestParseRejectsHostileInput(t *testing.T) {
	for _, p := range []string{
		"/org/model/resolve/main/../../etc/passwd",
		"/org/model/resolve/main/%2e%2e/x",
		"/org/model/resolve/main/a/%2E%2E/b",
		"/org/model/resolve/..%2F..%2Fx/config.json",
		"/org/model/resolve/main/a%00b",
		"/org/model/resolve/main/a%5Cb",
		"/org/model/resolve/main/%ff%fe",
		"/..%2Fetc/model/resolve/main/x",
		"/org/mo del/resolve/main/x",
		"/org/model/resolve/main/",
		"/org/model/resolve/main/%zz",
	} {
		rt, err := parseRoute(p)
		if err == nil {
			t.Errorf("%s: accepted as %+v", p, rt.file)
			continue
		}
		if !errors.Is(err, hf.ErrInvalid) && !errors.Is(err, errNotFound) {
			t.Errorf("%s: unexpected error %v", p, err)
		}
	}
}

func TestParseAPIRoutes(t *testing.T) {
	cases := []struct {
		path, id, action, rev, rest string
		typ                         hf.RepoType
	}{
		{"/api/models/org/model", "org/model", "", "", "", hf.Model},
		{"/api/models/gpt2", "gpt2", "", "", "", hf.Model},
		{"/api/models/gpt2/revision/main", "gpt2", "revision", "main", "", hf.Model},
		{"/api/models/org/model/revision/refs%2Fpr%2F1", "org/model", "revision", "refs/pr/1", "", hf.Model},
		{"/api/datasets/org/data/tree/main", "org/data", "tree", "main", "", hf.Dataset},
		{"/api/datasets/org/data/tree/refs/convert/parquet/default", "org/data", "tree", "refs/convert/parquet", "default", hf.Dataset},
		{"/api/models/org/model/tree/main/sub%20dir%2Fdeeper", "org/model", "tree", "main", "sub dir/deeper", hf.Model},
		{"/api/models/org/model/tree/main/sub%20dir/deeper", "org/model", "tree", "main", "sub dir/deeper", hf.Model},
		{"/api/spaces/org/app/paths-info/main", "org/app", "paths-info", "main", "", hf.Space},
		{"/api/models/org/model/refs", "org/model", "refs", "", "", hf.Model},
		{"/api/models/org/model/xet-read-token/main", "org/model", "xet-read-token", "main", "", hf.Model},
	}
	for _, c := range cases {
		rt, err := parseRoute(c.path)
		if err != nil || rt.api == nil {
			t.Errorf("%s: %v (%+v)", c.path, err, rt)
			continue
		}
		a := rt.api
		if a.Repo.ID != c.id || a.Repo.Type != c.typ || a.Action != c.action || string(a.Rev) != c.rev || a.Rest != c.rest {
			t.Errorf("%s: got %+v", c.path, a)
		}
	}
	for _, p := range []string{"/api/whoami-v2", "/api/agent-harnesses", "/api/resolve-cache/models/a/b/c/d"} {
		rt, err := parseRoute(p)
		if err != nil || rt.other == "" {
			t.Errorf("%s: want pass-through, got %+v %v", p, rt, err)
		}
	}
}

func TestParseRanges(t *testing.T) {
	const size = 1000
	cases := []struct {
		h    string
		want []byteRange
		err  error
	}{
		{"bytes=0-0", []byteRange{{0, 1}}, nil},
		{"bytes=0-999", []byteRange{{0, 1000}}, nil},
		{"bytes=0-1000", []byteRange{{0, 1000}}, nil},
		{"bytes=500-", []byteRange{{500, 1000}}, nil},
		{"bytes=-10", []byteRange{{990, 1000}}, nil},
		{"bytes=-5000", []byteRange{{0, 1000}}, nil},
		{"bytes=1000-", nil, errRangeUnsatisfied},
		{"bytes=2000-3000", nil, errRangeUnsatisfied},
		{"bytes=-0", nil, errRangeUnsatisfied},
		{"bytes=5-1", nil, errRangeSyntax},
		{"bytes=a-b", nil, errRangeSyntax},
		{"items=0-1", nil, errRangeSyntax},
		{"bytes=0-1,5-9", []byteRange{{0, 2}, {5, 10}}, nil},
		{"bytes=-1-2", nil, errRangeSyntax},
		{"bytes=99999999999999999999-", nil, errRangeSyntax},
	}
	for _, c := range cases {
		got, err := parseRanges(c.h, size)
		if !errors.Is(err, c.err) || len(got) != len(c.want) {
			t.Errorf("%q: %v %v, want %v %v", c.h, got, err, c.want, c.err)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: %v, want %v", c.h, got, c.want)
			}
		}
	}
}
