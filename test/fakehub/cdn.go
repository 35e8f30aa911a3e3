package fakehub

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// The CDN serves LFS blobs at /repos/{xx}/{yy}/{sha256} behind URLs the Hub
// signed. Like the real one it must never see the Hub token: a request with
// an Authorization header is refused (and counted in Stats.CDNAuthRejected).

var cdnPath = regexp.MustCompile(`^/repos/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})$`)

func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	if h.serveCAS(w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s3Error(w, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		return
	}
	if r.Header.Get("Authorization") != "" {
		h.stats.noteCDNAuth()
		s3Error(w, r, http.StatusForbidden, "InvalidArgument",
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
		return
	}
	m := cdnPath.FindStringSubmatch(r.URL.Path)
	if m == nil || m[3][:2] != m[1] || m[3][2:4] != m[2] {
		s3Error(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	sha := m[3]
	q := r.URL.Query()
	exp := q.Get("Expires")
	disp := q.Get("response-content-disposition")
	want := h.sign(r.URL.Path, exp, disp)
	if !hmac.Equal([]byte(want), []byte(q.Get("X-Amz-Signature"))) {
		s3Error(w, r, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	if e, err := strconv.ParseInt(exp, 10, 64); err != nil || !h.clock().Before(time.Unix(e, 0)) {
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	h.mu.RLock()
	b := h.blobs[sha]
	h.mu.RUnlock()
	if b == nil {
		s3Error(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	hd := w.Header()
	hd.Set("ETag", cdnETag(sha))
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Content-Type", "binary/octet-stream")
	if disp != "" {
		hd.Set("Content-Disposition", disp)
	}
	hd.Set("Cache-Control", "public, max-age=604800, immutable, s-maxage=604800")
	servingAddr(r, sha)
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(b.reader(), 0, b.size))
}

// cdnETag is the CDN's own ETag (an S3 md5-like value), deliberately not the
// sha256 a client must key the file by.
func cdnETag(sha string) string {
	s := sha1.Sum([]byte("fakehub cdn " + sha))
	return `"` + hex.EncodeToString(s[:16]) + `"`
}

// s3Error answers with S3's XML error shape.
func s3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>" + code + "</Code><Message>" + msg + "</Message></Error>"
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
