package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// serveFile answers HEAD and GET of /{repo}/resolve/{rev}/{path}.
//
// HEAD is answered from metadata alone (a cold file is never downloaded to
// answer it). GET serves a complete blob with http.ServeContent (ranges,
// conditionals, sendfile) or streams a blob that is being filled.
func (c *Client) serveFile(w http.ResponseWriter, r *http.Request, d Distribution, fr *fileRoute) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, errMethodNotAllowed)
		return
	}
	if fr.Kind == "raw" {
		// Raw git content (the LFS pointer for LFS files): small, passed through.
		c.passthrough(w, r, d, fr.Repo.FilePath("raw", fr.Rev, fr.Path))
		return
	}
	f, err := c.node.Resolve(r.Context(), node.FileRequest{Remote: d.Remote, Repository: d.Repository, Access: d.Access, Repo: fr.Repo, Revision: fr.Rev, Path: fr.Path, Token: bearer(r)})
	if err != nil {
		writeError(w, err)
		return
	}
	etag := f.ETag()
	h := w.Header()
	// One allocation for the values of every header of a hit (Header.Set
	// makes one per header); the keys are canonical.
	vs := []string{f.Commit, etag, f.SizeText(), "bytes", f.ContentType, f.ContentDisposition}
	h[hf.HeaderRepoCommit] = vs[0:1:1]
	h["Etag"] = vs[1:2:2]
	if f.Blob.LFS() {
		h[hf.HeaderLinkedETag] = vs[1:2:2]
	}
	h[hf.HeaderLinkedSize] = vs[2:3:3]
	h["Accept-Ranges"] = vs[3:4:4]
	h["Content-Type"] = vs[4:5:5]
	if r.URL.RawQuery == "" || r.URL.Query().Get("noContentDisposition") == "" {
		h["Content-Disposition"] = vs[5:6:6]
	}
	if f.Stale {
		h.Set(headerStale, "1")
	}
	if f.XetAdvertised() {
		h.Set(hf.HeaderXetHash, f.XetHash)
		h.Set("Link", c.xetLinks(r, d, f))
		if strings.Contains(r.Header.Get("Accept"), hf.XetFileInfoType) {
			c.serveXetFileInfo(w, r, f)
			return
		}
	}

	if r.Method == http.MethodHead {
		if notModified(w, r, etag) {
			return
		}
		h["Content-Length"] = vs[2:3:3]
		w.WriteHeader(http.StatusOK)
		return
	}

	content, err := c.node.Open(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	defer content.Close()
	if c.relayed(w, r, content) {
		return
	}
	c.serveContent(w, r, content, etag, vs[2:3:3])
}

// heldElsewhere is content that may live on another node: a blob
// (node.Content) or a xorb (node.XorbContent).
type heldElsewhere interface {
	Remote() bool
	Proxy(ctx context.Context, hdr http.Header) (*http.Response, error)
}

// relayed answers r with the owner's response when the content is on
// another node, and reports whether r is answered. False: serve the
// content here, it is local (or became local because no owner answered).
func (c *Client) relayed(w http.ResponseWriter, r *http.Request, content heldElsewhere) bool {
	if !content.Remote() {
		return false
	}
	resp, err := content.Proxy(r.Context(), r.Header)
	if err != nil {
		writeError(w, err)
		return true
	}
	if resp == nil {
		return false
	}
	c.relay(w, r, resp)
	return true
}

// serveContent serves local content: a complete blob with ServeContent, a
// filling one as a stream. length, if not nil, is the header value of the
// blob's size in decimal.
func (c *Client) serveContent(w http.ResponseWriter, r *http.Request, content *node.Content, etag string, length []string) {
	if file, ok := content.File(); ok {
		w.Header()[headerSource] = sourceValue(content.CurrentSource())
		http.ServeContent(w, r, "", time.Time{}, file)
		return
	}
	if data, ok := content.Bytes(); ok {
		// A small blob from memory: no file system calls.
		w.Header()[headerSource] = sourceValue(content.CurrentSource())
		if plainGet(r) {
			// What ServeContent does for a request without Range or
			// conditionals, minus its copy buffer and sniffing read.
			if length == nil || content.Size != int64(len(data)) {
				length = []string{strconv.Itoa(len(data))}
			}
			w.Header()["Content-Length"] = length
			w.WriteHeader(http.StatusOK)
			w.Write(data)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	c.serveStream(w, r, content, etag)
}

// sourceValue is X-Hfcache-Source's value, shared for the usual sources.
func sourceValue(src string) []string {
	switch src {
	case node.SourceDisk:
		return sourceDiskValue
	case node.SourceUpstream:
		return sourceUpstreamValue
	}
	return []string{src}
}

// Shared header values: never modified in place (Header.Set replaces the
// slice, Header.Add appends to a full one).
var (
	sourceDiskValue     = []string{node.SourceDisk}
	sourceUpstreamValue = []string{node.SourceUpstream}
)

// plainGet reports whether r is a GET with no header that ServeContent
// would act on (ranges and conditionals).
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, k := range []string{"Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

// relay streams the owner's answer to the client. The owner answered with
// full HTTP semantics (ranges, conditionals, errors in the Hub's shape);
// this node adds only that it passed the bytes on.
func (c *Client) relay(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	defer resp.Body.Close()
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Type", headerSource, hf.HeaderErrorCode, hf.HeaderErrorMessage, "Retry-After"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set(headerVia, h.Get(headerNode))
	if owner := resp.Header.Get(headerNode); owner != "" {
		h.Set(headerNode, owner)
	}
	if resp.StatusCode >= 400 {
		h.Del("ETag")
		h.Del(hf.HeaderLinkedETag)
		h.Del(hf.HeaderLinkedSize)
		h.Del("Content-Disposition")
	}
	w.WriteHeader(resp.StatusCode)
	// A large blob's body splices socket to socket (it implements WriterTo
	// and hands the owner's connection to the ResponseWriter's ReadFrom);
	// anything else is copied.
	if _, err := io.Copy(w, resp.Body); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// serveStream serves a blob that is still being filled (or passed through),
// with the same Range and conditional semantics as http.ServeContent.
func (c *Client) serveStream(w http.ResponseWriter, r *http.Request, content *node.Content, etag string) {
	if notModified(w, r, etag) {
		return
	}
	size := content.Size
	br, status := byteRange{0, size}, http.StatusOK
	rangeHdr := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && !etagMatches(ir, etag) {
		rangeHdr = ""
	}
	if size == 0 {
		// As net/http does: an empty file ignores Range (200, not 416), so
		// a blob answers the same while filling and once on disk.
		rangeHdr = ""
	}
	if rangeHdr != "" {
		ranges, err := parseRanges(rangeHdr, size)
		switch {
		case errors.Is(err, errRangeUnsatisfied):
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			http.Error(w, err.Error(), http.StatusRequestedRangeNotSatisfiable)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusRequestedRangeNotSatisfiable)
			return
		case len(ranges) == 1:
			// Several ranges (which no HF client sends) get the whole file:
			// a server may ignore Range, and that is better than guessing.
			br, status = ranges[0], http.StatusPartialContent
		}
	}
	rd, err := content.Reader(r.Context(), br.start, br.end)
	if err != nil {
		writeError(w, err)
		return
	}
	defer rd.Close()

	// Read the first bytes before committing to a status, so an upstream
	// that fails at once is reported in the Hub's error shape.
	buf := make([]byte, 256<<10)
	var first int
	if br.end > br.start {
		first, err = io.ReadAtLeast(rd, buf, 1)
		if err != nil {
			writeError(w, err)
			return
		}
	}
	h := w.Header()
	h.Set(headerSource, content.CurrentSource())
	h.Set("Content-Length", strconv.FormatInt(br.end-br.start, 10))
	if status == http.StatusPartialContent {
		h.Set("Content-Range", "bytes "+strconv.FormatInt(br.start, 10)+"-"+strconv.FormatInt(br.end-1, 10)+"/"+strconv.FormatInt(size, 10))
	}
	w.WriteHeader(status)
	if _, err := w.Write(buf[:first]); err != nil {
		return
	}
	http.NewResponseController(w).Flush()
	if err := copyBody(w, rd, buf); err != nil {
		if r.Context().Err() == nil {
			c.log.Warn("aborting response", "path", r.URL.Path, "err", err)
		}
		// The client must see a broken transfer, never a short file that
		// looks complete.
		panic(http.ErrAbortHandler)
	}
}

// copyBody sends the rest of rd. A reader that knows how to send itself (a
// fill's reader: sendfile from the partly written file) gets w as it is;
// any other goes through buf, since the connection's ReadFrom would copy
// it in smaller pieces.
func copyBody(w http.ResponseWriter, rd io.Reader, buf []byte) error {
	var err error
	if wt, ok := rd.(io.WriterTo); ok {
		_, err = wt.WriteTo(w)
	} else {
		_, err = io.CopyBuffer(writerOnly{w}, rd, buf)
	}
	return err
}

// writerOnly hides ReadFrom so io.CopyBuffer uses the given buffer.
type writerOnly struct{ io.Writer }
