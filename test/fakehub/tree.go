package fakehub

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// treeEntry is one entry of tree and paths-info listings (§4.2).
type treeEntry struct {
	Type       string          `json:"type"`
	OID        string          `json:"oid"`
	Size       int64           `json:"size"`
	Path       string          `json:"path"`
	LFS        *lfsInfo        `json:"lfs,omitempty"`
	XetHash    string          `json:"xetHash,omitempty"`
	LastCommit *lastCommitInfo `json:"lastCommit,omitempty"`
	Security   *securityStatus `json:"securityFileStatus,omitempty"`
}

type lfsInfo struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type lastCommitInfo struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Date  string `json:"date"`
}

type scanStatus struct {
	Status string `json:"status"`
}

type securityStatus struct {
	Status           string     `json:"status"`
	AVScan           scanStatus `json:"avScan"`
	PickleImportScan scanStatus `json:"pickleImportScan"`
}

// toEntry renders a node of commit c.
func toEntry(c *commit, n node, expand bool) treeEntry {
	te := treeEntry{Type: "directory", OID: n.oid, Path: n.path}
	if !n.dir {
		e := n.file
		te.Type, te.Size = "file", e.blob.size
		if e.lfs {
			te.LFS = &lfsInfo{OID: e.blob.sha256, Size: e.blob.size, PointerSize: len(e.pointer)}
		}
		te.XetHash = e.xetHash
	}
	if expand {
		if lc := c.lastCommit(n); lc != nil {
			te.LastCommit = &lastCommitInfo{ID: lc.id, Title: lc.title, Date: hubDate(lc.date)}
		}
		if !n.dir {
			te.Security = &securityStatus{Status: "safe", AVScan: scanStatus{"safe"}, PickleImportScan: scanStatus{"unscanned"}}
		}
	}
	return te
}

// tree answers /tree/{rev}[/{path}]?recursive=&expand=&cursor=, with the
// revision encoded in one segment or raw (refs/pr/N, refs/convert/X) and the
// path raw or with %2F.
func (h *Hub) tree(w http.ResponseWriter, r *http.Request, rp *repo, rest []string) {
	rev, pathSegs := splitRev(rest)
	if rev == "" {
		h.notFound(w, r)
		return
	}
	q := r.URL.Query()
	recursive, ok1 := parseBool(q.Get("recursive"))
	expand, ok2 := parseBool(q.Get("expand"))
	if !ok1 || !ok2 {
		h.writeError(w, r, http.StatusBadRequest, "", "Invalid boolean query parameter")
		return
	}
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	dir := strings.Trim(strings.Join(pathSegs, "/"), "/")
	if dir != "" {
		if n, ok := c.lookupNode(dir); !ok || !n.dir {
			h.writeError(w, r, http.StatusNotFound, hf.CodeEntryNotFound, msgEntryNotFound)
			return
		}
	}
	nodes := c.children(dir, recursive)
	if cur := q.Get("cursor"); cur != "" {
		after, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil {
			h.writeError(w, r, http.StatusBadRequest, "", "Invalid cursor")
			return
		}
		i := sort.Search(len(nodes), func(i int) bool { return nodes[i].path > string(after) })
		nodes = nodes[i:]
	}
	size := h.config().pageSize
	if expand {
		size = min(size, DefaultExpandPageSize)
	}
	if len(nodes) > size {
		nodes = nodes[:size]
		h.setNextLink(w, r, "cursor", base64.RawURLEncoding.EncodeToString([]byte(nodes[size-1].path)))
	}
	out := make([]treeEntry, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, toEntry(c, n, expand))
	}
	writeJSON(w, r, out)
}

// pathsInfo answers POST /paths-info/{rev} with a form (Python) or JSON (hf.js)
// body; unknown paths are silently left out.
func (h *Hub) pathsInfo(w http.ResponseWriter, r *http.Request, rp *repo, rev string) {
	paths, expand, ok := readPathsInfo(r)
	if !ok {
		h.writeError(w, r, http.StatusBadRequest, "", "Invalid request body")
		return
	}
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	out := []treeEntry{}
	seen := map[string]bool{}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if seen[p] {
			continue
		}
		seen[p] = true
		if n, ok := c.lookupNode(p); ok {
			out = append(out, toEntry(c, n, expand))
		}
	}
	writeJSON(w, r, out)
}

// readPathsInfo parses a paths-info body in either encoding.
func readPathsInfo(r *http.Request) (paths []string, expand, ok bool) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var body struct {
			Paths  []string        `json:"paths"`
			Expand json.RawMessage `json:"expand"`
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil || json.Unmarshal(data, &body) != nil {
			return nil, false, false
		}
		if len(body.Expand) > 0 {
			var b bool
			var s string
			switch {
			case json.Unmarshal(body.Expand, &b) == nil:
				expand = b
			case json.Unmarshal(body.Expand, &s) == nil:
				if expand, ok = parseBool(s); !ok {
					return nil, false, false
				}
			default:
				return nil, false, false
			}
		}
		return body.Paths, expand, true
	}
	if err := r.ParseForm(); err != nil {
		return nil, false, false
	}
	expand, ok = parseBool(r.PostForm.Get("expand"))
	return r.PostForm["paths"], expand, ok
}
