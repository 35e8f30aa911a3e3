package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// maxAPIBody caps a paths-info request body.
const maxAPIBody = 1 << 20

// serveRepoAPI answers /api/{type}s/{id}[/...]: info, revision, tree and
// paths-info from the node's cache, the Xet token route with the cache's
// own token (xet.go), anything else passed through to the Hub.
func (c *Client) serveRepoAPI(w http.ResponseWriter, r *http.Request, d Distribution, ar *apiRoute) {
	req := node.APIRequest{Remote: d.Remote, Access: d.Access, Repo: ar.Repo, Revision: ar.Rev, Query: r.URL.Query(), Token: bearer(r)}
	switch ar.Action {
	case "":
		req.Endpoint = node.EndpointInfo
	case "revision":
		req.Endpoint = node.EndpointInfo
	case "tree":
		req.Endpoint, req.Path = node.EndpointTree, ar.Rest
	case "paths-info":
		if r.Method != http.MethodPost {
			writeError(w, errMethodNotAllowed)
			return
		}
		body, ctype, err := readPathsInfo(r)
		if err != nil {
			writeError(w, err)
			return
		}
		req.Endpoint, req.Body, req.ContentType = node.EndpointPathsInfo, body, ctype
	case "xet-read-token":
		c.serveXetToken(w, r, d, ar)
		return
	case "xet-write-token":
		writeError(w, &hubclient.Error{Status: http.StatusForbidden, Message: "This cache is read-only: uploads go to the Hub itself"})
		return
	default:
		c.passthrough(w, r, d, ar.Repo.APIPath(ar.Suffix))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && req.Endpoint != node.EndpointPathsInfo {
		writeError(w, errMethodNotAllowed)
		return
	}
	resp, err := c.node.API(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	h := w.Header()
	if resp.ContentType != "" {
		h.Set("Content-Type", resp.ContentType)
	}
	if resp.Next != "" {
		h.Set("Link", "<"+c.externalBase(r, d)+resp.Next+`>; rel="next"`)
	}
	if resp.Stale {
		h.Set(headerStale, "1")
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if r.Method != http.MethodHead {
		w.Write(resp.Body)
	}
}

// readPathsInfo reads a paths-info body, form-encoded (huggingface_hub) or
// JSON (huggingface.js), and re-encodes it canonically so equal requests
// share a cache entry.
func readPathsInfo(r *http.Request) ([]byte, string, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: reading body: %v", hf.ErrInvalid, err)
	}
	if len(raw) > maxAPIBody {
		return nil, "", fmt.Errorf("%w: body over %d bytes", hf.ErrInvalid, maxAPIBody)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var paths []string
	var expand bool
	if mt == "application/json" {
		var body struct {
			Paths  []string `json:"paths"`
			Expand any      `json:"expand"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, "", fmt.Errorf("%w: paths-info JSON: %v", hf.ErrInvalid, err)
		}
		paths, expand = body.Paths, truthy(fmt.Sprint(body.Expand))
	} else {
		form, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, "", fmt.Errorf("%w: paths-info form: %v", hf.ErrInvalid, err)
		}
		paths, expand = form["paths"], truthy(form.Get("expand"))
	}
	for _, p := range paths {
		if _, err := hf.ParsePath(strings.Trim(p, "/")); err != nil {
			return nil, "", err
		}
	}
	out, _ := json.Marshal(map[string]any{"paths": paths, "expand": expand})
	return out, "application/json", nil
}

// truthy reads a query boolean the way clients send them: True, true, 1.
func truthy(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// hopHeaders are not forwarded by a proxy (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade"}

// passthrough forwards GET and HEAD of any other /api/ path to the Hub,
// uncached, with the caller's token; it hides Xet and points pagination
// links at this cache.
func (c *Client) passthrough(w http.ResponseWriter, r *http.Request, d Distribution, escapedPath string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, errMethodNotAllowed)
		return
	}
	fwd := http.Header{}
	for _, k := range []string{"Accept", "Range", "If-None-Match", "If-Range", "User-Agent"} {
		if v := r.Header.Get(k); v != "" {
			fwd.Set(k, v)
		}
	}
	// Never let the Hub answer in Xet's fileinfo form.
	if a := fwd.Get("Accept"); strings.Contains(a, "xet") {
		fwd.Set("Accept", "*/*")
	}
	resp, err := c.node.Passthrough(r.Context(), d.Remote, d.Access, r.Method, escapedPath, r.URL.RawQuery, bearer(r), fwd)
	if err != nil {
		writeError(w, err)
		return
	}
	defer resp.Body.Close()
	// Over what serve set: the Hub's headers, but not its CORS answer,
	// which was for this cache and not for the caller's Origin (setCORS
	// answered that), and its Vary joins ours.
	h := w.Header()
	for k, vs := range resp.Header {
		switch k {
		case "Access-Control-Allow-Origin", "Access-Control-Expose-Headers":
		case "Vary":
			h[k] = slices.Concat(vs, h[k]) // a new slice: vs stays resp's
		default:
			h[k] = vs
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	stripXetHeaders(h)
	if loc := h.Get("Location"); loc != "" && strings.HasPrefix(loc, "/") {
		h.Set("Location", d.BasePath+loc)
	}
	if link := h.Get("Link"); link != "" {
		h.Set("Link", c.rewriteLink(r, d, link))
		if h.Get("Link") == "" {
			h.Del("Link")
		}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, resp.Body); err != nil && !errors.Is(err, r.Context().Err()) {
		panic(http.ErrAbortHandler)
	}
}

var linkEntry = regexp.MustCompile(`<([^>]*)>([^,]*)`)

// rewriteLink points a Hub Link header's URLs at this cache and drops the
// Xet entries.
func (c *Client) rewriteLink(r *http.Request, d Distribution, link string) string {
	var out []string
	for _, m := range linkEntry.FindAllStringSubmatch(link, -1) {
		target, params := m[1], m[2]
		if strings.Contains(params, "xet-") {
			continue
		}
		if u, err := url.Parse(target); err == nil && u.IsAbs() {
			target = c.externalBase(r, d) + u.EscapedPath()
			if u.RawQuery != "" {
				target += "?" + u.RawQuery
			}
		}
		out = append(out, "<"+target+">"+params)
	}
	return strings.Join(out, ", ")
}

// stripXetHeaders removes every header that would switch a client to Xet.
func stripXetHeaders(h http.Header) {
	for _, k := range hf.XetHeaders {
		h.Del(k)
	}
	if ct := h.Get("Content-Type"); strings.Contains(ct, "xet") {
		h.Set("Content-Type", "application/octet-stream")
	}
}
