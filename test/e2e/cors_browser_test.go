package e2e

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// corsPage is a page of another origin that reads a file through the cache
// as transformers.js does in a browser: a plain GET, then a one-byte ranged
// GET with a token, which the browser sends only after a preflight. Each
// result is what the page's script can see: the status, the headers the
// cache exposes, and the body's length. Synchronous requests, so the
// results are in the DOM by the time Chromium dumps it.
const corsPage = `<!doctype html>
<html><body><pre id="out">no result</pre><script>
function get(headers) {
  var x = new XMLHttpRequest();
  x.open("GET", FILE_URL, false);
  for (var k in headers) x.setRequestHeader(k, headers[k]);
  try { x.send(); } catch (e) { return {error: String(e)}; }
  return {status: x.status, commit: x.getResponseHeader("X-Repo-Commit"),
    size: x.getResponseHeader("X-Linked-Size"), etag: x.getResponseHeader("ETag"),
    range: x.getResponseHeader("Content-Range"), length: x.responseText.length};
}
document.getElementById("out").textContent = JSON.stringify({
  plain: get({}),
  ranged: get({"Range": "bytes=0-0", "Authorization": "Bearer TOKEN"})
});
</script></body></html>`

// corsResult is one request's outcome as the page saw it.
type corsResult struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
	Commit string `json:"commit"`
	Size   string `json:"size"`
	ETag   string `json:"etag"`
	Range  string `json:"range"`
	Length int    `json:"length"`
}

var corsOutRE = regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`)

// TestTrapCORSInBrowser: a cross-origin page in headless Chromium reads a
// file through an hfcache process. The browser's own CORS checks decide
// what the script sees: the plain GET must expose X-Repo-Commit,
// X-Linked-Size and ETag; the ranged GET with a token must pass its
// preflight and expose Content-Range.
func TestTrapCORSInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumBin); err != nil {
		t.Skipf("%s not found (make deps installs Debian's chromium): %v", chromiumBin, err)
	}
	hub := startHub(t)
	p := startProc(t, hub.URL(), t.TempDir())
	fi := hub.FileInfo(hf.Model, modelID, "main", "config.json")
	fileURL := resolveURL(p.URL, hf.Model, modelID, "main", "config.json")

	page := strings.NewReplacer("FILE_URL", strconv.Quote(fileURL), "TOKEN", goodToken).Replace(corsPage)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	defer site.Close() // another port: another origin than the cache's

	dom := renderDOM(t, site.URL+"/")
	m := corsOutRE.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no result in the page:\n%s", dom)
	}
	var got struct{ Plain, Ranged corsResult }
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &got); err != nil {
		t.Fatalf("the page's result %q: %v", m[1], err)
	}
	size := strconv.FormatInt(fi.Size, 10)
	pl := got.Plain
	if pl.Error != "" || pl.Status != http.StatusOK || pl.Commit != fi.Commit || pl.Size != size ||
		pl.ETag != `"`+fi.GitSHA1+`"` || pl.Length != int(fi.Size) {
		t.Errorf("plain GET as the page saw it: %+v; want 200, commit %s, size %s, ETag %q, %d bytes",
			pl, fi.Commit, size, fi.GitSHA1, fi.Size)
	}
	rg := got.Ranged
	if rg.Error != "" || rg.Status != http.StatusPartialContent || rg.Range != "bytes 0-0/"+size || rg.Length != 1 {
		t.Errorf("ranged GET with a token as the page saw it: %+v; want 206, Content-Range bytes 0-0/%s, 1 byte", rg, size)
	}
}
