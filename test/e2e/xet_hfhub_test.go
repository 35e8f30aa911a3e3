package e2e

// What huggingface_hub (Python, 0.30 → 1.18) reads from the cache to
// download a Xet-backed file, re-implemented rule by rule in Go (Python
// cannot run here) and run against the cache's HEAD of a Xet file and its
// token route.
//
// Sources (github.com/huggingface/huggingface_hub):
//
//   - src/huggingface_hub/file_download.py, get_hf_file_metadata (0.30 →
//     1.18): HEAD {endpoint}/{repo}/resolve/{rev}/{file} with
//     "Accept-Encoding: identity", redirects not followed except relative
//     ones (_request_wrapper(follow_relative_redirects=True), in 1.x
//     _httpx_follow_relative_redirects); the final response gives
//     HfFileMetadata(commit_hash=X-Repo-Commit, etag=X-Linked-Etag or ETag,
//     size=X-Linked-Size or Content-Length,
//     xet_file_data=parse_xet_file_data_from_response(r[, endpoint=endpoint])).
//   - src/huggingface_hub/utils/_xet.py, parse_xet_file_data_from_response:
//     file_hash = headers["X-Xet-Hash"]; refresh_route = links["xet-auth"]["url"]
//     if "xet-auth" in response.links else headers["X-Xet-Refresh-Route"];
//     a KeyError (either missing) → None (no Xet: plain HTTP). Since 0.34 a
//     refresh_route starting with constants.HUGGINGFACE_CO_URL_HOME
//     ("https://huggingface.co/") has that prefix replaced by the endpoint
//     (HF_ENDPOINT); other hosts are left as they are. 0.30–0.33 use it
//     verbatim.
//   - response.links: requests.Response.links over
//     requests.utils.parse_header_links (≤0.36), httpx.Response.links over
//     httpx._utils.parse_header_links (1.x): the same algorithm, encoded in
//     pyParseHeaderLinks; keyed by rel, else by url.
//   - _xet.py, refresh_xet_connection_info (0.30 → 1.18): raises if
//     refresh_route is None, then _fetch_xet_connection_info_with_url(
//     file_data.refresh_route, headers): GET of the route as is (requests /
//     httpx need an absolute URL: a relative one fails with MissingSchema /
//     UnsupportedProtocol), hf_raise_for_status, then
//     parse_xet_connection_info_from_headers(resp.headers), None → ValueError
//     "Xet headers have not been correctly set by the server.". The JSON
//     body is not read.
//   - _xet.py, parse_xet_connection_info_from_headers: endpoint =
//     headers["X-Xet-Cas-Url"], access_token = headers["X-Xet-Access-Token"],
//     expiration_unix_epoch = int(headers["X-Xet-Token-Expiration"]);
//     KeyError/ValueError/TypeError → None.
//   - _xet.py, fetch_xet_connection_info_from_repo_info (uploads, and
//     HfFileSystem): f"{endpoint}/api/{repo_type}s/{repo_id}/xet-{read|write}-token/{revision}",
//     parsed the same way.
//   - _xet.py, _is_expired (the connection-info cache, later versions):
//     expiration_unix_epoch <= int(time.time()) + 60 counts as expired.
//   - file_download.py, xet_get: hf_xet.download_files(endpoint=
//     connection_info.endpoint, token_info=(access_token, expiration),
//     token_refresher=refresh_xet_connection_info again); hf_xet then GETs
//     {endpoint}/v1/reconstructions/{file_hash} (older hf_xet:
//     {endpoint}/reconstruction/{file_hash}) with "Authorization: Bearer
//     {access_token}" and fetches the xorb ranges it lists.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/xetclient"
)

// huggingfaceCoURLHome is constants.HUGGINGFACE_CO_URL_HOME.
const huggingfaceCoURLHome = "https://huggingface.co/"

var pyLinkSplit = regexp.MustCompile(", *<")

// pyParseHeaderLinks is requests.utils.parse_header_links (and
// httpx._utils.parse_header_links, identical):
//
//	replace_chars = " '\""; value = value.strip(replace_chars)
//	for val in re.split(", *<", value):
//	    url, params = val.split(";", 1)  (or val, "")
//	    link = {"url": url.strip("<> '\"")}
//	    for param in params.split(";"):
//	        key, value = param.split("=")  (a ValueError ends the loop)
//	        link[key.strip(replace_chars)] = value.strip(replace_chars)
func pyParseHeaderLinks(value string) []map[string]string {
	const replace = " '\""
	value = strings.Trim(value, replace)
	if value == "" {
		return nil
	}
	var links []map[string]string
	for _, val := range pyLinkSplit.Split(value, -1) {
		u, params, _ := strings.Cut(val, ";")
		link := map[string]string{"url": strings.Trim(u, "<> '\"")}
		for _, param := range strings.Split(params, ";") {
			kv := strings.Split(param, "=")
			if len(kv) != 2 {
				break
			}
			link[strings.Trim(kv[0], replace)] = strings.Trim(kv[1], replace)
		}
		links = append(links, link)
	}
	return links
}

// pyLinks is Response.links: the Link header (several header lines joined
// with ", " as urllib3 and httpx do), keyed by rel, else by url.
func pyLinks(h http.Header) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, l := range pyParseHeaderLinks(strings.Join(h.Values("Link"), ", ")) {
		key := l["rel"]
		if key == "" {
			key = l["url"]
		}
		out[key] = l
	}
	return out
}

type pyXetFileData struct{ FileHash, RefreshRoute string }

// pyParseXetFileData is parse_xet_file_data_from_response; endpoint is
// the configured endpoint for the ≥0.34 rewrite ("" for 0.30–0.33, which
// have no rewrite).
func pyParseXetFileData(h http.Header, endpoint string) *pyXetFileData {
	hash, ok := h[http.CanonicalHeaderKey(hf.HeaderXetHash)]
	if !ok {
		return nil
	}
	var route string
	if l, ok := pyLinks(h)["xet-auth"]; ok {
		route = l["url"]
	} else if r, ok := h[http.CanonicalHeaderKey("X-Xet-Refresh-Route")]; ok {
		route = strings.Join(r, ", ")
	} else {
		return nil
	}
	if endpoint != "" && strings.HasPrefix(route, huggingfaceCoURLHome) {
		route = strings.Replace(route, strings.TrimRight(huggingfaceCoURLHome, "/"), strings.TrimRight(endpoint, "/"), -1)
	}
	return &pyXetFileData{FileHash: strings.Join(hash, ", "), RefreshRoute: route}
}

type pyXetConnInfo struct {
	AccessToken string
	Expiration  int64
	Endpoint    string
}

// pyParseXetConnInfo is parse_xet_connection_info_from_headers. Python's
// int() takes surrounding whitespace and "_" separators; nothing else.
func pyParseXetConnInfo(h http.Header) *pyXetConnInfo {
	get := func(k string) (string, bool) {
		v, ok := h[http.CanonicalHeaderKey(k)]
		return strings.Join(v, ", "), ok
	}
	ep, ok1 := get(hf.HeaderXetCASURL)
	tok, ok2 := get(hf.HeaderXetAccessToken)
	exp, ok3 := get(hf.HeaderXetExpiration)
	if !ok1 || !ok2 || !ok3 {
		return nil
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(exp), "_", ""), 10, 64)
	if err != nil {
		return nil
	}
	return &pyXetConnInfo{AccessToken: tok, Expiration: n, Endpoint: ep}
}

// pyMetadataHead is get_hf_file_metadata's request: HEAD with
// Accept-Encoding: identity, relative redirects followed (path replaced),
// others returned as they are. It returns the final response's headers.
func pyMetadataHead(t *testing.T, rawURL, token string) (int, http.Header) {
	t.Helper()
	u, _ := url.Parse(rawURL)
	for hop := 0; ; hop++ {
		hdr := map[string]string{"Accept-Encoding": "identity", "User-Agent": "huggingface_hub/1.18.0; python/3.12"}
		if token != "" {
			hdr["Authorization"] = "Bearer " + token
		}
		resp, _ := do(t, http.MethodHead, u.String(), hdr)
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && hop < 10 {
			if lu, err := url.Parse(loc); err == nil && lu.Host == "" {
				u.Path, u.RawPath = lu.Path, lu.RawPath
				continue
			}
		}
		return resp.StatusCode, resp.Header
	}
}

// TestXetHuggingFaceHub: the cache's answers satisfy every rule above, for
// each version range, for a public Xet file and a gated one (with the
// granted token), and hf_xet's requests with what Python hands it succeed.
func TestXetHuggingFaceHub(t *testing.T) {
	hub := xetJSHub(t)
	s := newStack(t, hub)
	for _, c := range []struct {
		repo, file, token string
	}{
		{xetModelID, "a.bin", ""},
		{xetGatedID, "g.bin", goodToken},
		{modelID, "xet.bin", ""}, // a Xet file of the standard fixtures (default xorb size)
	} {
		t.Run(c.repo, func(t *testing.T) {
			fi := hub.FileInfo(hf.Model, c.repo, "main", c.file)
			status, h := pyMetadataHead(t, resolveURL(s.URL, hf.Model, c.repo, "main", c.file), c.token)
			if status != http.StatusOK {
				t.Fatalf("HEAD: %d", status)
			}
			// HfFileMetadata: size and etag (xet_get needs expected_size).
			if h.Get(hf.HeaderLinkedSize) != strconv.FormatInt(fi.Size, 10) || hf.NormalizeETag(h.Get(hf.HeaderLinkedETag)) != fi.SHA256 || !hf.IsCommit(h.Get(hf.HeaderRepoCommit)) {
				t.Fatalf("HEAD metadata: size %q etag %q commit %q", h.Get(hf.HeaderLinkedSize), h.Get(hf.HeaderLinkedETag), h.Get(hf.HeaderRepoCommit))
			}
			// X-Xet-Refresh-Route (read by every version when the Link is
			// missing): if the cache sends one it must be usable too.
			if rr := h.Get("X-Xet-Refresh-Route"); rr != "" && !strings.HasPrefix(rr, s.URL+"/") {
				t.Errorf("X-Xet-Refresh-Route %q is not an absolute URL on the cache: 0.30–1.18 would fail on it if the Link were missing", rr)
			}
			for _, v := range []struct {
				versions string
				endpoint string // the ≥0.34 rewrite's endpoint ("" = no rewrite)
			}{
				{"0.30–0.33 (verbatim)", ""},
				{"0.34–1.18 (HF_ENDPOINT=cache)", s.URL},
			} {
				xfd := pyParseXetFileData(h, v.endpoint)
				if xfd == nil {
					t.Fatalf("%s: parse_xet_file_data_from_response → None: the client would not use Xet (headers %v)", v.versions, h)
				}
				if xfd.FileHash != fi.XetHash {
					t.Fatalf("%s: file_hash %q, want %s", v.versions, xfd.FileHash, fi.XetHash)
				}
				// The route is used as is: absolute, on the cache, never the Hub.
				ru, err := url.Parse(xfd.RefreshRoute)
				if err != nil || ru.Scheme == "" || ru.Host == "" || !strings.HasPrefix(xfd.RefreshRoute, s.URL+"/") {
					t.Fatalf("%s: refresh_route %q is not an absolute URL on the cache %s", v.versions, xfd.RefreshRoute, s.URL)
				}
				if !strings.Contains(xfd.RefreshRoute, "/api/models/"+c.repo+"/xet-read-token/") {
					t.Fatalf("%s: refresh_route %q is not the repo's token route", v.versions, xfd.RefreshRoute)
				}
				// refresh_xet_connection_info: GET with the caller's headers.
				hdr := map[string]string{"User-Agent": "huggingface_hub/1.18.0; python/3.12"}
				if c.token != "" {
					hdr["Authorization"] = "Bearer " + c.token
				}
				resp, body := do(t, http.MethodGet, xfd.RefreshRoute, hdr)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: refresh route: %d %s", v.versions, resp.StatusCode, body)
				}
				ci := pyParseXetConnInfo(resp.Header)
				if ci == nil {
					t.Fatalf("%s: parse_xet_connection_info_from_headers → None: ValueError \"Xet headers have not been correctly set by the server.\" (%v)", v.versions, resp.Header)
				}
				now := time.Now().Unix()
				if ci.Expiration <= now || ci.Expiration > now+2*3600 {
					t.Fatalf("%s: expiration %d, now %d", v.versions, ci.Expiration, now)
				}
				if ci.Expiration <= now+60 {
					t.Errorf("%s: expiration %d is within the clients' 60 s safety period: every use would refetch it", v.versions, ci.Expiration)
				}
				if ci.Endpoint != s.URL || ci.AccessToken == "" {
					t.Fatalf("%s: endpoint %q token %q, want the cache %s", v.versions, ci.Endpoint, ci.AccessToken, s.URL)
				}
				// hf_xet with (endpoint, token): v1 reconstructions, and the
				// legacy path of older hf_xet; then the whole file.
				for _, path := range []string{"/v1/reconstructions/", "/reconstruction/"} {
					resp, body := do(t, http.MethodGet, ci.Endpoint+path+xfd.FileHash, map[string]string{"Authorization": "Bearer " + ci.AccessToken})
					var rec struct {
						Terms     []json.RawMessage `json:"terms"`
						FetchInfo map[string]any    `json:"fetch_info"`
					}
					if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rec) != nil || len(rec.Terms) == 0 || len(rec.FetchInfo) == 0 {
						t.Fatalf("%s: GET %s%s: %d %.300s", v.versions, path, xfd.FileHash, resp.StatusCode, body)
					}
				}
				cl := &xetclient.Client{Version: 1}
				ctx := context.Background()
				rec, err := cl.Reconstruction(ctx, ci.Endpoint+"/v1/reconstructions/"+xfd.FileHash, ci.AccessToken, 0, -1)
				if err != nil {
					t.Fatal(err)
				}
				got, err := cl.Assemble(ctx, rec)
				if err != nil || sha(got) != fi.SHA256 {
					t.Fatalf("%s: hf_xet-style download: %v, sha256 %s want %s", v.versions, err, sha(got), fi.SHA256)
				}
			}
			// fetch_xet_connection_info_from_repo_info builds the route itself
			// from the endpoint: the same answer.
			hdr := map[string]string{}
			if c.token != "" {
				hdr["Authorization"] = "Bearer " + c.token
			}
			resp, _ := do(t, http.MethodGet, s.URL+"/api/models/"+c.repo+"/xet-read-token/"+h.Get(hf.HeaderRepoCommit), hdr)
			if ci := pyParseXetConnInfo(resp.Header); resp.StatusCode != 200 || ci == nil || ci.Endpoint != s.URL {
				t.Fatalf("xet-read-token/{commit}: %d %v", resp.StatusCode, resp.Header)
			}
		})
	}
	// A Hub-style Link pointing at huggingface.co (what a cache must never
	// pass through): 0.30–0.33 would go to huggingface.co, ≥0.34 to the
	// endpoint — the rule as encoded.
	h := http.Header{}
	h.Set(hf.HeaderXetHash, strings.Repeat("ab", 32))
	h.Add("Link", `<https://huggingface.co/api/models/x/y/xet-read-token/abc>; rel="xet-auth", <https://cas-server.xethub.hf.co/v1/reconstructions/ab>; rel="xet-reconstruction-info"`)
	if d := pyParseXetFileData(h, ""); d == nil || d.RefreshRoute != "https://huggingface.co/api/models/x/y/xet-read-token/abc" {
		t.Fatalf("0.30 rule: %+v", d)
	}
	if d := pyParseXetFileData(h, "http://cache:8080/"); d == nil || d.RefreshRoute != "http://cache:8080/api/models/x/y/xet-read-token/abc" {
		t.Fatalf("0.34 rule: %+v", d)
	}
}
