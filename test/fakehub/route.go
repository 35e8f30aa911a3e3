package fakehub

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// segments splits an escaped URL path and decodes each segment exactly once,
// so "refs%2Fpr%2F1" stays one segment "refs/pr/1".
func segments(escaped string) (raw, dec []string, ok bool) {
	raw = strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	dec = make([]string, len(raw))
	for i, s := range raw {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, nil, false
		}
		dec[i] = d
	}
	return raw, dec, true
}

// serveHub dispatches the Hub's routes.
func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	raw, segs, ok := segments(r.URL.EscapedPath())
	if !ok {
		h.writeError(w, r, http.StatusBadRequest, "", "Invalid URL path")
		return
	}
	if segs[0] == "api" && len(segs) >= 2 {
		switch segs[1] {
		case "whoami-v2":
			if len(segs) == 2 {
				h.whoami(w, r)
				return
			}
		case "resolve-cache":
			h.serveResolveCache(w, r, raw[2:], segs[2:])
			return
		case "models", "datasets", "spaces", "kernels":
			t, _ := hf.ParseRepoType(segs[1])
			h.serveAPI(w, r, t, raw[2:], segs[2:])
			return
		}
		h.notFound(w, r)
		return
	}
	t := hf.Model
	prefix := ""
	switch segs[0] {
	case "datasets", "spaces", "kernels":
		t, _ = hf.ParseRepoType(segs[0])
		prefix = raw[0] + "/"
		raw, segs = raw[1:], segs[1:]
	}
	isFileRoute := func(s string) bool { return s == "resolve" || s == "raw" }
	id, n, ok := h.splitRepo(t, segs, 2, false, isFileRoute)
	if !ok {
		h.notFound(w, r)
		return
	}
	h.serveFileRoute(w, r, fileRoute{
		typ: t, id: id, kind: segs[n], rest: segs[n+1:],
		location: func(newID string) string { return "/" + prefix + newID + "/" + strings.Join(raw[n:], "/") },
	})
}

func (h *Hub) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
}

// splitRepo finds the repository id ("ns/name" or legacy "name") at the start
// of segs: the segment right after it must satisfy isAction and be followed by
// at least minAfter segments, or, with bare, the id may end the path. When
// both forms fit, the one naming a known repository (or redirect) wins.
func (h *Hub) splitRepo(t hf.RepoType, segs []string, minAfter int, bare bool, isAction func(string) bool) (id string, n int, ok bool) {
	fits := func(n int) bool {
		if n > len(segs) || segs[0] == "" || (n == 2 && segs[1] == "") {
			return false
		}
		if len(segs) == n {
			return bare
		}
		return len(segs) >= n+1+minAfter && isAction(segs[n])
	}
	var cands []int
	for _, n := range []int{2, 1} {
		if fits(n) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", 0, false
	}
	if len(cands) == 2 && !h.known(t, segs[0]+"/"+segs[1]) && h.known(t, segs[0]) {
		cands = cands[1:]
	}
	n = cands[0]
	return strings.Join(segs[:n], "/"), n, true
}

// known reports whether id names a repository or a redirect.
func (h *Hub) known(t hf.RepoType, id string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	k := repoKey(t, id)
	return h.repos[k] != nil || h.redirects[k] != ""
}

// lookupRepo finds a repository; for a renamed or aliased id it returns the
// id to redirect to instead.
func (h *Hub) lookupRepo(t hf.RepoType, id string) (rp *repo, redirect string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	k := repoKey(t, id)
	if rp := h.repos[k]; rp != nil {
		return rp, ""
	}
	return nil, h.redirects[k]
}

// openRepo does what every repository route starts with: check the token,
// redirect renamed repositories, and authorize. It returns nil when it has
// answered the request.
func (h *Hub) openRepo(w http.ResponseWriter, r *http.Request, t hf.RepoType, id string, location func(string) string, level access) (*repo, string) {
	user, ok := h.identify(w, r)
	if !ok {
		return nil, ""
	}
	rp, redirect := h.lookupRepo(t, id)
	if redirect != "" {
		loc := location(redirect)
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		redirectTo(w, r, http.StatusTemporaryRedirect, loc)
		return nil, ""
	}
	if !h.authorize(w, r, rp, user, level) {
		return nil, ""
	}
	return rp, user
}

// redirectTo answers a redirect with the Hub's small text body.
func redirectTo(w http.ResponseWriter, r *http.Request, status int, loc string) {
	word := "Found"
	if status == http.StatusTemporaryRedirect {
		word = "Temporary Redirect"
	}
	body := word + ". Redirecting to " + loc
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

// resolveRev resolves a revision of rp, answering RevisionNotFound if it does not exist.
func (h *Hub) resolveRev(w http.ResponseWriter, r *http.Request, rp *repo, rev string) *commit {
	h.mu.RLock()
	c := rp.resolve(rev)
	h.mu.RUnlock()
	if c == nil {
		h.writeError(w, r, http.StatusNotFound, hf.CodeRevisionNotFound, "Invalid rev id: "+rev)
	}
	return c
}

// splitRev separates a revision from the path segments after it: one
// (possibly %2F-encoded) segment, or the raw multi-segment "refs/pr/N" and
// "refs/convert/X".
func splitRev(segs []string) (rev string, rest []string) {
	if len(segs) == 0 {
		return "", nil
	}
	if len(segs) >= 3 && segs[0] == "refs" {
		switch {
		case segs[1] == "pr" && isDigits(segs[2]), segs[1] == "convert" && segs[2] != "":
			return "refs/" + segs[1] + "/" + segs[2], segs[3:]
		}
	}
	return segs[0], segs[1:]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// joinPath joins decoded path segments into a repository path; a segment
// that held an encoded "/" cannot name a file, so it yields "".
func joinPath(segs []string) string {
	for _, s := range segs {
		if s == "" || strings.Contains(s, "/") {
			return ""
		}
	}
	return strings.Join(segs, "/")
}

// parseBool reads the Hub's query booleans: true/True/1, false/False/0, or absent.
func parseBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "true", "1":
		return true, true
	case "false", "0", "":
		return false, true
	}
	return false, false
}
