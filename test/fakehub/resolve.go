package fakehub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// fileRoute is a parsed /{prefix}{id}/{resolve|raw}/{rev}/{path} request.
type fileRoute struct {
	typ      hf.RepoType
	id       string
	kind     string   // "resolve" or "raw"
	rest     []string // decoded segments after kind: revision and path
	location func(newID string) string
	cached   bool // /api/resolve-cache/...: never redirect to itself
}

const xetFileInfoType = "application/vnd.xet-fileinfo+json"

// serveFileRoute answers resolve, raw and resolve-cache requests.
func (h *Hub) serveFileRoute(w http.ResponseWriter, r *http.Request, fr fileRoute) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.writeError(w, r, http.StatusMethodNotAllowed, "", "Method not allowed")
		return
	}
	rp, _ := h.openRepo(w, r, fr.typ, fr.id, fr.location, accessFiles)
	if rp == nil {
		return
	}
	rev, pathSegs := splitRev(fr.rest)
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	path := joinPath(pathSegs)
	e := c.files[path]
	if e == nil {
		w.Header().Set(hf.HeaderRepoCommit, c.id)
		h.writeError(w, r, http.StatusNotFound, hf.CodeEntryNotFound, msgEntryNotFound)
		return
	}
	cfg := h.config()
	hd := w.Header()
	hd.Set(hf.HeaderRepoCommit, c.id)
	switch {
	case fr.kind == "raw" && e.lfs:
		// git content of an LFS file is its pointer.
		h.serveBytes(w, r, e.path, e.oid, byteReaderAt(e.pointer), int64(len(e.pointer)), e.oid)
	case fr.kind == "raw" || (!e.lfs && (hf.IsCommit(rev) || fr.cached || !cfg.resolveCache)):
		h.serveBytes(w, r, e.path, e.oid, e.blob.reader(), e.blob.size, e.addr())
	case !e.lfs:
		// The Hub's cache redirect for regular files resolved by a non-commit revision (§2.1 d).
		orig := "/" + fr.typ.URLPrefix() + fr.id + "/resolve/" + rev + "/" + e.path
		loc := "/api/resolve-cache/" + fr.typ.Plural() + "/" + fr.id + "/" + c.id + "/" + escapePath(e.path) +
			"?" + escapeComponent(orig) + "=&etag=" + escapeComponent(`"`+e.oid+`"`)
		redirectTo(w, r, http.StatusTemporaryRedirect, loc)
	default:
		h.serveLFS(w, r, fr, c, e, cfg)
	}
}

// serveResolveCache answers /api/resolve-cache/{type}s/{id}/{commit}/{path},
// with or without the query the Hub's 307 carries.
func (h *Hub) serveResolveCache(w http.ResponseWriter, r *http.Request, raw, segs []string) {
	if len(segs) < 1 {
		h.notFound(w, r)
		return
	}
	t, err := hf.ParseRepoType(segs[0])
	if err != nil || !strings.HasSuffix(segs[0], "s") {
		h.notFound(w, r)
		return
	}
	segs, raw = segs[1:], raw[1:]
	id, n, ok := h.splitRepo(t, segs, 1, false, hf.IsCommit)
	if !ok {
		h.notFound(w, r)
		return
	}
	h.serveFileRoute(w, r, fileRoute{
		typ: t, id: id, kind: "resolve", rest: segs[n:], cached: true,
		location: func(newID string) string {
			return "/api/resolve-cache/" + t.Plural() + "/" + newID + "/" + strings.Join(raw[n:], "/")
		},
	})
}

// serveBytes answers 200/206/304/416 for a file's bytes with the Hub's
// headers; addr is the content address counted in Stats.
func (h *Hub) serveBytes(w http.ResponseWriter, r *http.Request, path, etag string, content io.ReaderAt, size int64, addr string) {
	hd := w.Header()
	hd.Set("ETag", `"`+etag+`"`)
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Content-Type", contentType(path))
	hd.Set("Content-Disposition", contentDisposition(path))
	servingAddr(r, addr)
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(content, 0, size))
}

// serveLFS answers the 302 to the CDN for an LFS file, or the Xet fileinfo
// document when the client asks for it.
func (h *Hub) serveLFS(w http.ResponseWriter, r *http.Request, fr fileRoute, c *commit, e *entry, cfg config) {
	hd := w.Header()
	hd.Set(hf.HeaderLinkedETag, `"`+e.blob.sha256+`"`)
	hd.Set(hf.HeaderLinkedSize, strconv.FormatInt(e.blob.size, 10))
	base := h.baseURL(r)
	tokenURL := base + "/api/" + fr.typ.Plural() + "/" + fr.id + "/xet-read-token/" + c.id
	reconURL := h.casBase(r) + "/v1/reconstructions/" + e.xetHash
	if e.xet {
		hd.Set("X-Xet-Hash", e.xetHash)
		hd.Set("Link", "<"+tokenURL+`>; rel="xet-auth", <`+reconURL+`>; rel="xet-reconstruction-info"`)
	}
	if e.xet && strings.Contains(r.Header.Get("Accept"), xetFileInfoType) {
		body, _ := json.Marshal(map[string]any{
			"hash": e.xetHash, "size": e.blob.size, "etag": e.blob.sha256,
			"refreshUrl": tokenURL, "reconstructionUrl": reconURL,
		})
		hd.Set("ETag", `"`+e.blob.sha256+`"`)
		hd.Set("Content-Type", xetFileInfoType)
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
		return
	}
	hd.Set("ETag", `"`+e.oid+`"`) // not the content hash: clients must use X-Linked-Etag
	redirectTo(w, r, http.StatusFound, h.signedURL(e, cfg))
}

// signedURL is the CDN URL of an LFS blob, signed and expiring like S3's.
func (h *Hub) signedURL(e *entry, cfg config) string {
	sha := e.blob.sha256
	path := "/repos/" + sha[:2] + "/" + sha[2:4] + "/" + sha
	ttl := int64(cfg.urlTTL / time.Second)
	exp := strconv.FormatInt(cfg.now().Unix()+ttl, 10)
	disp := contentDisposition(e.path)
	q := "response-content-disposition=" + escapeComponent(disp) +
		"&X-Amz-Expires=" + strconv.FormatInt(ttl, 10) +
		"&Expires=" + exp +
		"&X-Amz-Signature=" + h.sign(path, exp, disp)
	h.lmu.Lock()
	base := h.cdnURL
	h.lmu.Unlock()
	return base + path + "?" + q
}

// sign is the CDN URL signature over the path, expiry and disposition.
func (h *Hub) sign(path, expires, disposition string) string {
	m := hmac.New(sha256.New, h.signKey)
	m.Write([]byte(path + "\n" + expires + "\n" + disposition))
	return hex.EncodeToString(m.Sum(nil))
}

// contentType guesses like the Hub: text files as text/plain; charset=utf-8.
func contentType(path string) string {
	ext := ""
	if i := strings.LastIndexByte(path, '.'); i >= 0 && !strings.Contains(path[i:], "/") {
		ext = strings.ToLower(path[i:])
	}
	switch ext {
	case ".json", ".txt", ".md", ".py", ".yaml", ".yml", ".csv", ".jsonl", ".gitattributes", ".model", ".jinja":
		return "text/plain; charset=utf-8"
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".html":
		return "text/html; charset=utf-8"
	}
	return "application/octet-stream"
}

// contentDisposition is the Hub's inline disposition with both filename forms.
func contentDisposition(path string) string {
	base := hf.Path(path).Base()
	var ascii, ext strings.Builder
	for _, c := range base {
		switch {
		case c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			ascii.WriteByte('_')
		default:
			ascii.WriteRune(c)
		}
	}
	for _, b := range []byte(base) {
		if isAttrChar(b) {
			ext.WriteByte(b)
		} else {
			ext.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{b})))
		}
	}
	return "inline; filename*=UTF-8''" + ext.String() + `; filename="` + ascii.String() + `";`
}

// isAttrChar is RFC 5987's attr-char.
func isAttrChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}

// escapeComponent is JavaScript's encodeURIComponent, which the Hub uses.
func escapeComponent(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	return b.String()
}

// escapePath escapes each segment of a repo path with escapeComponent.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = escapeComponent(s)
	}
	return strings.Join(segs, "/")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
