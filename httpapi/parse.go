package httpapi

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// A parsed client route. Exactly one of the pointer fields is set.
type route struct {
	file *fileRoute // /[type/]{id}/{resolve|raw}/{rev}/{path}
	api  *apiRoute  // /api/{type}s/{id}[/{action}...]
	// other is any other /api/... path, escaped, for pass-through.
	other string
	xet   *xetRoute // the CAS routes (xet.go)
}

// fileRoute is a file download: /[datasets/|spaces/|kernels/]{id}/{resolve|raw}/{rev}/{path}.
type fileRoute struct {
	Repo hf.Repo
	Kind string // "resolve" or "raw"
	Rev  hf.Revision
	Path hf.Path
}

// apiRoute is a repository API call: /api/{type}s/{id}[/{action}/{rev}[/{rest}]].
type apiRoute struct {
	Repo   hf.Repo
	Action string // "", "revision", "tree", "paths-info", "xet-read-token", or another (passed through)
	Rev    hf.Revision
	Rest   string // decoded remainder (tree: the directory)
	// Suffix is the escaped path after the repo id, for pass-through.
	Suffix string
}

// repoActions are the path segments that may follow a repo id in the API.
var repoActions = map[string]bool{
	"revision": true, "tree": true, "paths-info": true, "xet-read-token": true,
	"refs": true, "commits": true, "auth-check": true, "resolve-cache": true,
	"treesize": true, "commit": true, "discussions": true, "settings": true,
	"xet-write-token": true, "preupload": true, "branch": true, "tag": true,
	"compare": true, "lfs-files": true, "notebook": true, "scan": true,
	"last-commit": true, "parquet": true, "croissant": true, "endpoints": true,
}

// parseRoute parses an escaped path (as r.URL.EscapedPath returns it, with
// the distribution's base path removed). Each segment is unescaped exactly
// once; empty segments (duplicate slashes) are dropped.
func parseRoute(escaped string) (route, error) {
	var arr [16]string // on the stack: a hit's path has far fewer segments
	segs := appendSegments(arr[:0], escaped)
	if len(segs) == 0 {
		return route{}, errNotFound
	}
	if segs[0] == "api" {
		return parseAPI(segs)
	}
	if xr, ok := parseXetRoute(segs); ok {
		return route{xet: xr}, nil
	}
	t := hf.Model
	switch segs[0] {
	case "datasets", "spaces", "kernels":
		t, _ = hf.ParseRepoType(segs[0])
		segs = segs[1:]
	}
	// The repo id has one or two segments; the kind that follows decides.
	idLen := 0
	switch {
	case len(segs) >= 4 && isFileKind(segs[2]):
		idLen = 2
	case len(segs) >= 3 && isFileKind(segs[1]):
		idLen = 1
	default:
		return route{}, errNotFound
	}
	id, err := unescapeJoin(segs[:idLen])
	if err != nil {
		return route{}, err
	}
	repo, err := hf.NewRepo(t, id)
	if err != nil {
		return route{}, err
	}
	rev, rest, err := takeRevision(segs[idLen+1:])
	if err != nil {
		return route{}, err
	}
	p, err := unescapeJoin(rest)
	if err != nil {
		return route{}, err
	}
	path, err := hf.ParsePath(p)
	if err != nil {
		return route{}, err
	}
	return route{file: &fileRoute{Repo: repo, Kind: segs[idLen], Rev: rev, Path: path}}, nil
}

func isFileKind(s string) bool { return s == "resolve" || s == "raw" }

func parseAPI(segs []string) (route, error) {
	other := "/" + strings.Join(segs, "/")
	if len(segs) < 3 {
		return route{other: other}, nil
	}
	t, err := hf.ParseRepoType(segs[1])
	if err != nil || !strings.HasSuffix(segs[1], "s") || segs[1] == "s" {
		return route{other: other}, nil
	}
	rest := segs[2:]
	// "/api/models/gpt2/revision/main" has a one-segment id; otherwise two.
	idLen := 2
	if len(rest) == 1 || (len(rest) >= 2 && repoActions[rest[1]] && !(len(rest) >= 3 && repoActions[rest[2]])) {
		idLen = 1
	}
	if len(rest) < idLen {
		idLen = len(rest)
	}
	id, err := unescapeJoin(rest[:idLen])
	if err != nil {
		return route{}, err
	}
	repo, err := hf.NewRepo(t, id)
	if err != nil {
		return route{}, err
	}
	ar := &apiRoute{Repo: repo}
	after := rest[idLen:]
	if len(after) > 0 {
		ar.Suffix = "/" + strings.Join(after, "/")
		ar.Action = after[0]
		switch ar.Action {
		case "revision", "tree", "paths-info", "xet-read-token":
			if len(after) < 2 {
				return route{}, fmt.Errorf("%w: %s needs a revision", hf.ErrInvalid, ar.Action)
			}
			rev, rest, err := takeRevision(after[1:])
			if err != nil {
				return route{}, err
			}
			ar.Rev = rev
			if ar.Rest, err = unescapeJoin(rest); err != nil {
				return route{}, err
			}
			if ar.Rest != "" {
				if _, err := hf.ParsePath(ar.Rest); err != nil {
					return route{}, err
				}
			}
		}
	}
	return route{api: ar}, nil
}

var (
	prDigits   = regexp.MustCompile(`^[0-9]+$`)
	convertRef = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// takeRevision reads a revision from the first segment(s): one segment,
// possibly "%2F"-encoded ("refs%2Fpr%2F1"), or the raw multi-segment forms
// refs/pr/N and refs/convert/X that huggingface.js sends unencoded.
func takeRevision(segs []string) (hf.Revision, []string, error) {
	if len(segs) == 0 {
		return "", nil, fmt.Errorf("%w: missing revision", hf.ErrInvalid)
	}
	first, err := url.PathUnescape(segs[0])
	if err != nil {
		return "", nil, fmt.Errorf("%w: revision: %v", hf.ErrInvalid, err)
	}
	n := 1
	if first == "refs" && len(segs) >= 3 {
		kind, _ := url.PathUnescape(segs[1])
		name, _ := url.PathUnescape(segs[2])
		if (kind == "pr" && prDigits.MatchString(name)) || (kind == "convert" && convertRef.MatchString(name)) {
			first, n = "refs/"+kind+"/"+name, 3
		}
	}
	rev, err := hf.ParseRevision(first)
	if err != nil {
		return "", nil, err
	}
	return rev, segs[n:], nil
}

// splitSegments splits an escaped path on "/" and drops empty segments, so
// duplicate slashes (old clients with a trailing slash in HF_ENDPOINT) are
// normalised.
func splitSegments(escaped string) []string { return appendSegments(nil, escaped) }

// appendSegments is splitSegments appending to dst.
func appendSegments(dst []string, escaped string) []string {
	for seg := range strings.SplitSeq(escaped, "/") {
		if seg != "" {
			dst = append(dst, seg)
		}
	}
	return dst
}

// unescapeJoin unescapes each segment once and joins them with "/".
func unescapeJoin(segs []string) (string, error) {
	escaped := false
	for _, s := range segs {
		escaped = escaped || strings.IndexByte(s, '%') >= 0
	}
	if !escaped {
		return strings.Join(segs, "/"), nil // one segment: no copy
	}
	var b strings.Builder
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", fmt.Errorf("%w: path segment %q", hf.ErrInvalid, s)
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(u)
	}
	return b.String(), nil
}
