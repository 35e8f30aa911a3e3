package fakehub

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// dateFormat is the Hub's JSON date, always with milliseconds (§4.1).
const dateFormat = "2006-01-02T15:04:05.000Z"

func hubDate(t time.Time) string { return t.UTC().Format(dateFormat) }

var apiActions = map[string]bool{
	"revision": true, "tree": true, "paths-info": true, "refs": true,
	"commits": true, "xet-read-token": true, "auth-check": true,
}

// serveAPI dispatches /api/{type}s/{id}[/{action}/...].
func (h *Hub) serveAPI(w http.ResponseWriter, r *http.Request, t hf.RepoType, raw, segs []string) {
	id, n, ok := h.splitRepo(t, segs, 0, true, func(s string) bool { return apiActions[s] })
	if !ok {
		h.notFound(w, r)
		return
	}
	action := ""
	var rest []string
	if n < len(segs) {
		action, rest = segs[n], segs[n+1:]
	}
	want := http.MethodGet
	if action == "paths-info" {
		want = http.MethodPost
	}
	if r.Method != want && !(want == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", want)
		h.writeError(w, r, http.StatusMethodNotAllowed, "", "Method not allowed")
		return
	}
	level := accessMeta
	if action == "xet-read-token" || action == "auth-check" {
		level = accessFiles
	}
	location := func(newID string) string {
		loc := "/api/" + t.Plural() + "/" + newID
		if n < len(raw) {
			loc += "/" + strings.Join(raw[n:], "/")
		}
		return loc
	}
	rp, _ := h.openRepo(w, r, t, id, location, level)
	if rp == nil {
		return
	}
	switch action {
	case "":
		h.info(w, r, rp, "HEAD")
	case "revision":
		if len(rest) == 0 {
			h.notFound(w, r)
			return
		}
		h.info(w, r, rp, strings.Join(rest, "/"))
	case "tree":
		h.tree(w, r, rp, rest)
	case "paths-info":
		h.pathsInfo(w, r, rp, strings.Join(rest, "/"))
	case "refs":
		h.refs(w, r, rp)
	case "commits":
		h.commits(w, r, rp, strings.Join(rest, "/"))
	case "xet-read-token":
		h.xetReadToken(w, r, rp, strings.Join(rest, "/"))
	case "auth-check":
		writeJSON(w, r, map[string]any{})
	}
}

// expandKeys are the properties the Hub accepts in expand, per repo type.
var expandKeys = map[hf.RepoType][]string{
	hf.Model: {"author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt", "disabled",
		"downloads", "downloadsAllTime", "evalResults", "gated", "gguf", "inference", "inferenceProviderMapping",
		"lastModified", "library_name", "likes", "mask_token", "model-index", "pipeline_tag", "private",
		"resourceGroup", "safetensors", "sha", "siblings", "spaces", "tags", "transformersInfo",
		"trendingScore", "widgetData", "usedStorage", "xetEnabled"},
	hf.Dataset: {"author", "cardData", "citation", "createdAt", "disabled", "description", "downloads",
		"downloadsAllTime", "gated", "lastModified", "likes", "paperswithcode_id", "private", "siblings",
		"sha", "tags", "trendingScore", "usedStorage", "resourceGroup", "xetEnabled"},
	hf.Space: {"author", "cardData", "createdAt", "datasets", "disabled", "lastModified", "likes", "models",
		"private", "runtime", "sdk", "siblings", "sha", "subdomain", "tags", "trendingScore", "usedStorage",
		"resourceGroup", "xetEnabled"},
	hf.Kernel: {"author", "createdAt", "disabled", "downloads", "lastModified", "likes", "private", "sha",
		"siblings", "tags", "usedStorage"},
}

// info answers the repo info document at a revision.
func (h *Hub) info(w http.ResponseWriter, r *http.Request, rp *repo, rev string) {
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	q := r.URL.Query()
	expand := append(q["expand"], q["expand[]"]...)
	blobs, ok1 := parseBool(q.Get("blobs"))
	security, ok2 := parseBool(q.Get("securityStatus"))
	if !ok1 || !ok2 {
		h.writeError(w, r, http.StatusBadRequest, "", "Invalid boolean query parameter")
		return
	}
	h.mu.RLock()
	doc := h.infoDoc(rp, c, blobs)
	h.mu.RUnlock()
	if security {
		doc["securityRepoStatus"] = map[string]any{"scansDone": true, "filesWithIssues": []any{}}
	}
	if len(expand) > 0 {
		allowed := map[string]bool{}
		for _, k := range expandKeys[rp.typ] {
			allowed[k] = true
		}
		out := map[string]any{"_id": doc["_id"], "id": doc["id"]}
		for _, k := range expand {
			if !allowed[k] {
				h.writeError(w, r, http.StatusBadRequest, "",
					`"expand" must be one of ["`+strings.Join(expandKeys[rp.typ], `","`)+`"]`)
				return
			}
			if v, ok := doc[k]; ok {
				out[k] = v
			} else {
				out[k] = nil
			}
		}
		doc = out
	}
	writeJSON(w, r, doc)
}

// infoDoc is the full info document; h.mu is held.
func (h *Hub) infoDoc(rp *repo, c *commit, blobs bool) map[string]any {
	siblings := make([]map[string]any, 0, len(c.files))
	var used int64
	for _, n := range c.nodes {
		if n.dir {
			continue
		}
		e := n.file
		used += e.blob.size
		s := map[string]any{"rfilename": e.path}
		if blobs {
			s["size"] = e.blob.size
			s["blobId"] = e.oid
			if e.lfs {
				s["lfs"] = map[string]any{"sha256": e.blob.sha256, "size": e.blob.size, "pointerSize": len(e.pointer)}
			}
		}
		siblings = append(siblings, s)
	}
	author, _, _ := strings.Cut(rp.id, "/")
	if !strings.Contains(rp.id, "/") {
		author = ""
	}
	var gated any = false
	if rp.gated != "" {
		gated = rp.gated
	}
	doc := map[string]any{
		"_id": rp.objID, "id": rp.id, "author": author, "sha": c.id,
		"lastModified": hubDate(c.date), "createdAt": hubDate(rp.created),
		"private": rp.private, "gated": gated, "disabled": rp.disabled,
		"downloads": 0, "likes": 0, "tags": []string{}, "siblings": siblings,
		"usedStorage": used, "xetEnabled": true,
	}
	switch rp.typ {
	case hf.Model:
		doc["modelId"] = rp.id
		doc["library_name"] = "transformers"
		doc["spaces"] = []string{}
	case hf.Space:
		doc["sdk"] = "static"
		doc["subdomain"] = strings.ReplaceAll(strings.ToLower(rp.id), "/", "-")
		doc["runtime"] = map[string]any{"stage": "RUNNING"}
	}
	return doc
}

// refs answers /refs[?include_prs=1].
func (h *Hub) refs(w http.ResponseWriter, r *http.Request, rp *repo) {
	prs, ok := parseBool(r.URL.Query().Get("include_prs"))
	if !ok {
		h.writeError(w, r, http.StatusBadRequest, "", "Invalid boolean query parameter")
		return
	}
	type ref struct {
		Name         string `json:"name"`
		Ref          string `json:"ref"`
		TargetCommit string `json:"targetCommit"`
	}
	list := func(m map[string]string, prefix string, name func(string) string) []ref {
		out := []ref{}
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				out = append(out, ref{Name: name(k), Ref: k, TargetCommit: v})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	h.mu.RLock()
	prefixed := func(m map[string]string, p string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[p+k] = v
		}
		return out
	}
	doc := map[string]any{
		"branches": list(prefixed(rp.branches, "refs/heads/"), "refs/heads/", func(s string) string { return strings.TrimPrefix(s, "refs/heads/") }),
		"tags":     list(prefixed(rp.tags, "refs/tags/"), "refs/tags/", func(s string) string { return strings.TrimPrefix(s, "refs/tags/") }),
		"converts": list(rp.special, "refs/convert/", func(s string) string { return strings.TrimPrefix(s, "refs/convert/") }),
	}
	if prs {
		doc["pullRequests"] = list(rp.special, "refs/pr/", func(s string) string { return s })
	}
	h.mu.RUnlock()
	writeJSON(w, r, doc)
}

// commits answers /commits/{rev}: the history from rev back, paginated with
// p=N and a Link rel="next" like the tree.
func (h *Hub) commits(w http.ResponseWriter, r *http.Request, rp *repo, rev string) {
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	page := 0
	if p := r.URL.Query().Get("p"); p != "" {
		var err error
		if page, err = strconv.Atoi(p); err != nil || page < 0 {
			h.writeError(w, r, http.StatusBadRequest, "", "Invalid page")
			return
		}
	}
	size := min(h.config().pageSize, DefaultExpandPageSize)
	var all []*commit
	for x := c; x != nil; x = x.parent {
		all = append(all, x)
	}
	from := min(page*size, len(all))
	to := min(from+size, len(all))
	out := make([]map[string]any, 0, to-from)
	for _, x := range all[from:to] {
		out = append(out, map[string]any{
			"id": x.id, "title": x.title, "message": x.title + "\n", "date": hubDate(x.date),
			"authors": []map[string]any{{"user": "fakehub", "avatar": nil}},
		})
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(all)))
	if to < len(all) {
		h.setNextLink(w, r, "p", strconv.Itoa(page+1))
	}
	writeJSON(w, r, out)
}

// setNextLink sets the absolute Link rel="next" to this URL with key=value.
func (h *Hub) setNextLink(w http.ResponseWriter, r *http.Request, key, value string) {
	q := r.URL.Query()
	q.Set(key, value)
	u := h.baseURL(r) + r.URL.EscapedPath() + "?" + q.Encode()
	w.Header().Set("Link", "<"+u+`>; rel="next"`)
}
