package fakehub

// The Xet CAS read API, served on the CDN listener (another origin than the
// Hub): reconstructions behind Xet tokens, xorb byte ranges behind signed
// URLs.
//
//	GET /v1/reconstructions/{fileID}   Authorization: Bearer <xet token>  [Range: bytes=a-b]
//	GET /v2/reconstructions/{fileID}   (same, v2 document)
//	GET /reconstruction/{fileID}       (legacy path of v1)
//	GET /xorbs/{xorb}?r=a-b,c-d&exp=<unix>&sig=<hmac>   Range: bytes=...  (no Authorization)

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/xet"
)

// CASURL is the Xet CAS's base URL that tokens, Links and fileinfo
// documents advertise: the CDN URL unless SetCASURL set another.
func (h *Hub) CASURL() string {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	if h.casURL != "" {
		return h.casURL
	}
	return h.cdnURL
}

// SetCASURL overrides the advertised CAS base URL (served by CDNHandler).
func (h *Hub) SetCASURL(u string) {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	h.casURL = u
}

// casBase is CASURL, or the request's own host for an unstarted Hub.
func (h *Hub) casBase(r *http.Request) string {
	if u := h.CASURL(); u != "" {
		return u
	}
	return "http://" + r.Host
}

// xetToken signs a Xet access token for rp, valid until exp:
// "xet1.{repo objID}.{exp}.{hmac}".
func (h *Hub) xetToken(objID string, exp int64) string {
	p := objID + "." + strconv.FormatInt(exp, 10)
	return "xet1." + p + "." + h.mac("xet-token\n"+p)
}

func (h *Hub) mac(s string) string {
	m := hmac.New(sha256.New, h.signKey)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

var errXetToken = errors.New("invalid Xet token")

// checkXetToken returns the repository a request's Xet token names.
func (h *Hub) checkXetToken(r *http.Request) (*repo, error) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, errXetToken
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 4 || parts[0] != "xet1" {
		return nil, errXetToken
	}
	p := parts[1] + "." + parts[2]
	if !hmac.Equal([]byte(h.mac("xet-token\n"+p)), []byte(parts[3])) {
		return nil, errXetToken
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return nil, errXetToken
	}
	if !h.clock().Before(time.Unix(exp, 0)) {
		return nil, errors.New("Xet token expired")
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, rp := range h.repos {
		if rp.objID == parts[1] {
			return rp, nil
		}
	}
	return nil, errXetToken
}

// casError answers the CAS's JSON error.
func casError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// serveCAS answers the CAS routes; false if the path is not one of them.
func (h *Hub) serveCAS(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	var version, id string
	switch {
	case strings.HasPrefix(p, "/v1/reconstructions/"):
		version, id = "v1", p[len("/v1/reconstructions/"):]
	case strings.HasPrefix(p, "/v2/reconstructions/"):
		version, id = "v2", p[len("/v2/reconstructions/"):]
	case strings.HasPrefix(p, "/reconstruction/"):
		version, id = "v1", p[len("/reconstruction/"):]
	case strings.HasPrefix(p, "/xorbs/"):
		h.serveXorb(w, r, p[len("/xorbs/"):])
		return true
	default:
		return false
	}
	if cors(w, r) {
		return true
	}
	if version == "v2" && h.xetConfig().noV2 {
		// A CAS that predates v2 (as xet-core's simulation can be told to).
		http.NotFound(w, r)
		return true
	}
	h.serveReconstruction(w, r, version, id)
	return true
}

// Local mirrors of package xet's reconstruction documents (same JSON).
type (
	chunkRangeJSON struct {
		Start uint32 `json:"start"`
		End   uint32 `json:"end"`
	}
	byteRangeJSON struct {
		Start uint64 `json:"start"`
		End   uint64 `json:"end"`
	}
	termJSON struct {
		Hash           string         `json:"hash"`
		UnpackedLength uint64         `json:"unpacked_length"`
		Range          chunkRangeJSON `json:"range"`
	}
	fetchInfoJSON struct {
		Range    chunkRangeJSON `json:"range"`
		URL      string         `json:"url"`
		URLRange byteRangeJSON  `json:"url_range"`
	}
	reconV1JSON struct {
		OffsetIntoFirstRange uint64                     `json:"offset_into_first_range"`
		Terms                []termJSON                 `json:"terms"`
		FetchInfo            map[string][]fetchInfoJSON `json:"fetch_info"`
	}
	xorbRangeJSON struct {
		Chunks chunkRangeJSON `json:"chunks"`
		Bytes  byteRangeJSON  `json:"bytes"`
	}
	xorbFetchJSON struct {
		URL    string          `json:"url"`
		Ranges []xorbRangeJSON `json:"ranges"`
	}
	reconV2JSON struct {
		OffsetIntoFirstRange uint64                     `json:"offset_into_first_range"`
		Terms                []termJSON                 `json:"terms"`
		Xorbs                map[string][]xorbFetchJSON `json:"xorbs"`
	}
)

// serveReconstruction answers a v1 or v2 reconstruction.
func (h *Hub) serveReconstruction(w http.ResponseWriter, r *http.Request, version, id string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		casError(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	h.stats.noteReconstruction(id)
	rp, err := h.checkXetToken(r)
	if err != nil {
		casError(w, r, http.StatusUnauthorized, err.Error())
		return
	}
	if _, err := xet.ParseHash(id); err != nil || strings.ToLower(id) != id {
		casError(w, r, http.StatusBadRequest, "invalid file hash")
		return
	}
	h.mu.RLock()
	f := h.xetFiles[id]
	ok := rp.xetHashes[id]
	h.mu.RUnlock()
	if f == nil || !ok {
		casError(w, r, http.StatusNotFound, "file not found")
		return
	}
	size := uint64(f.size)
	first, last := uint64(0), size // [first, last)
	if rh := r.Header.Get("Range"); rh != "" {
		a, b, err := parseFileRange(rh, size)
		if errors.Is(err, xet.ErrRangeNotSatisfiable) {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatUint(size, 10))
			casError(w, r, http.StatusRequestedRangeNotSatisfiable, "range not satisfiable")
			return
		}
		if err != nil {
			casError(w, r, http.StatusBadRequest, err.Error())
			return
		}
		first, last = a, b+1
	}
	terms, offset := f.slice(first, last)
	cfg := h.xetConfig()
	exp := h.clock().Add(cfg.urlTTL).Unix()
	base := h.casBase(r)
	out := make([]termJSON, len(terms))
	for i, t := range terms {
		out[i] = termJSON{Hash: t.x.name, UnpackedLength: t.unpacked, Range: chunkRangeJSON{t.start, t.end}}
	}
	if version == "v1" {
		doc := reconV1JSON{OffsetIntoFirstRange: offset, Terms: out, FetchInfo: map[string][]fetchInfoJSON{}}
		seen := map[[2]uint32]map[string]bool{}
		for _, t := range terms {
			k := [2]uint32{t.start, t.end}
			if seen[k][t.x.name] {
				continue
			}
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			seen[k][t.x.name] = true
			br := byteRangeJSON{t.x.offs[t.start], t.x.offs[t.end] - 1}
			doc.FetchInfo[t.x.name] = append(doc.FetchInfo[t.x.name], fetchInfoJSON{
				Range: chunkRangeJSON{t.start, t.end}, URL: h.xorbURL(base, t.x.name, []byteRangeJSON{br}, exp), URLRange: br,
			})
		}
		for _, fi := range doc.FetchInfo {
			sort.Slice(fi, func(i, j int) bool {
				return fi[i].Range.Start < fi[j].Range.Start || fi[i].Range.Start == fi[j].Range.Start && fi[i].Range.End < fi[j].Range.End
			})
		}
		writeCASJSON(w, r, doc)
		return
	}
	doc := reconV2JSON{OffsetIntoFirstRange: offset, Terms: out, Xorbs: map[string][]xorbFetchJSON{}}
	per := map[*xorb][]chunkRangeJSON{}
	var order []*xorb
	for _, t := range terms {
		if per[t.x] == nil {
			order = append(order, t.x)
		}
		per[t.x] = append(per[t.x], chunkRangeJSON{t.start, t.end})
	}
	for _, x := range order {
		rs := mergeChunkRanges(per[x])
		for len(rs) > 0 {
			n := min(len(rs), cfg.maxRanges)
			e := xorbFetchJSON{}
			var brs []byteRangeJSON
			for _, cr := range rs[:n] {
				br := byteRangeJSON{x.offs[cr.Start], x.offs[cr.End] - 1}
				brs = append(brs, br)
				e.Ranges = append(e.Ranges, xorbRangeJSON{Chunks: cr, Bytes: br})
			}
			e.URL = h.xorbURL(base, x.name, brs, exp)
			doc.Xorbs[x.name] = append(doc.Xorbs[x.name], e)
			rs = rs[n:]
		}
	}
	writeCASJSON(w, r, doc)
}

func writeCASJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// mergeChunkRanges sorts ranges and merges overlapping and adjacent ones.
func mergeChunkRanges(rs []chunkRangeJSON) []chunkRangeJSON {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var out []chunkRangeJSON
	for _, r := range rs {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// parseFileRange parses a reconstruction's "bytes=a-b", "bytes=a-" or
// "bytes=-n" over a file of size bytes into an inclusive range.
func parseFileRange(s string, size uint64) (a, b uint64, err error) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, errors.New("invalid range: " + s)
	}
	as, bs, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, errors.New("invalid range: " + s)
	}
	if as == "" { // suffix
		n, err := strconv.ParseUint(bs, 10, 64)
		if err != nil || n == 0 {
			return 0, 0, errors.New("invalid range: " + s)
		}
		if size == 0 {
			return 0, 0, xet.ErrRangeNotSatisfiable
		}
		return size - min(n, size), size - 1, nil
	}
	a, err = strconv.ParseUint(as, 10, 64)
	if err != nil {
		return 0, 0, errors.New("invalid range: " + s)
	}
	b = size - 1
	if bs != "" {
		if b, err = strconv.ParseUint(bs, 10, 64); err != nil || b < a {
			return 0, 0, errors.New("invalid range: " + s)
		}
	}
	if a >= size {
		return 0, 0, xet.ErrRangeNotSatisfiable
	}
	return a, min(b, size-1), nil
}

// slice is the terms covering file bytes [first, last), cut at chunk
// granularity, and how many bytes of the first precede first.
func (f *xetFile) slice(first, last uint64) ([]xetTerm, uint64) {
	if first >= last {
		return []xetTerm{}, 0
	}
	i := sort.Search(len(f.terms), func(i int) bool { return f.termOff[i+1] > first })
	j := sort.Search(len(f.terms), func(j int) bool { return f.termOff[j+1] >= last })
	out := append([]xetTerm(nil), f.terms[i:j+1]...)
	// Trim the first term to the chunk holding first.
	t := &out[0]
	pos := f.termOff[i]
	for pos+uint64(t.x.chunks[t.start].size) <= first {
		pos += uint64(t.x.chunks[t.start].size)
		t.unpacked -= uint64(t.x.chunks[t.start].size)
		t.start++
	}
	offset := first - pos
	// Trim the last term after the chunk holding last-1.
	t = &out[len(out)-1]
	end := f.termOff[j+1]
	if len(out) == 1 {
		end = pos + t.unpacked
	}
	for end-uint64(t.x.chunks[t.end-1].size) >= last {
		end -= uint64(t.x.chunks[t.end-1].size)
		t.unpacked -= uint64(t.x.chunks[t.end-1].size)
		t.end--
	}
	return out, offset
}

// xorbURL is a signed URL for byte ranges of a xorb.
func (h *Hub) xorbURL(base, name string, rs []byteRangeJSON, exp int64) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(r.Start, 10) + "-" + strconv.FormatUint(r.End, 10))
	}
	q := b.String()
	e := strconv.FormatInt(exp, 10)
	return base + "/xorbs/" + name + "?r=" + q + "&exp=" + e + "&sig=" + h.mac("xorb\n"+name+"\n"+q+"\n"+e)
}

// parseByteRanges parses "a-b,c-d" (Range "bytes=" values, or a signed
// URL's r) against a size; "a-" and "-n" are allowed.
func parseByteRanges(spec string, size int64) ([]ByteRange, bool) {
	var out []ByteRange
	for _, part := range strings.Split(spec, ",") {
		as, bs, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			return nil, false
		}
		var r ByteRange
		switch {
		case as == "":
			n, err := strconv.ParseInt(bs, 10, 64)
			if err != nil || n <= 0 {
				return nil, false
			}
			r = ByteRange{max(0, size-n), size - 1}
		default:
			a, err := strconv.ParseInt(as, 10, 64)
			if err != nil || a < 0 {
				return nil, false
			}
			b := size - 1
			if bs != "" {
				if b, err = strconv.ParseInt(bs, 10, 64); err != nil || b < a {
					return nil, false
				}
			}
			r = ByteRange{a, b}
		}
		out = append(out, r)
	}
	return out, len(out) > 0
}

// serveXorb answers a signed xorb URL: only GET/HEAD with a Range whose every
// range lies within one signed range, before the URL expires, without
// Authorization (like the CDN, it refuses the token).
func (h *Hub) serveXorb(w http.ResponseWriter, r *http.Request, name string) {
	if cors(w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s3Error(w, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		return
	}
	rec := XorbFetch{Xorb: name, Method: r.Method}
	defer func() { servingXorb(r, rec) }()
	if r.Header.Get("Authorization") != "" {
		h.stats.noteCDNAuth()
		s3Error(w, r, http.StatusForbidden, "InvalidArgument",
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
		return
	}
	q := r.URL.Query()
	signed, exp := q.Get("r"), q.Get("exp")
	if !hmac.Equal([]byte(h.mac("xorb\n"+name+"\n"+signed+"\n"+exp)), []byte(q.Get("sig"))) {
		s3Error(w, r, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	if e, err := strconv.ParseInt(exp, 10, 64); err != nil || !h.clock().Before(time.Unix(e, 0)) {
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	h.mu.RLock()
	x := h.xorbs[name]
	h.mu.RUnlock()
	if x == nil {
		s3Error(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	size := int64(x.size())
	allowed, ok := parseByteRanges(signed, size)
	if !ok {
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "Invalid signed ranges")
		return
	}
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "A Range within the signed ranges is required")
		return
	}
	want, ok := parseByteRanges(spec, size)
	if !ok {
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "Invalid Range")
		return
	}
	rec.Ranges = want
	exact := h.xetConfig().exact
	for _, wr := range want {
		in := false
		for _, ar := range allowed {
			if ar.Start <= wr.Start && wr.End <= ar.End && (!exact || ar == wr) {
				in = true
				break
			}
		}
		if !in {
			s3Error(w, r, http.StatusForbidden, "AccessDenied", "Range outside the signed ranges")
			return
		}
	}
	hd := w.Header()
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("ETag", `"`+name+`"`)
	hd.Set("Cache-Control", "public, max-age=604800, immutable")
	servingAddr(r, name)
	corrupt := h.xetConfig().corrupt[name]
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(xorbReader{x: x, corrupt: corrupt}, 0, size))
}

// xetReadToken answers the Xet token route with the JSON body and X-Xet-*
// headers; the token reads the Xet files of rp (any commit).
func (h *Hub) xetReadToken(w http.ResponseWriter, r *http.Request, rp *repo, rev string) {
	c := h.resolveRev(w, r, rp, rev)
	if c == nil {
		return
	}
	exp := h.clock().Add(h.xetConfig().tokenTTL).Unix()
	h.mu.RLock()
	id, objID := rp.id, rp.objID
	h.mu.RUnlock()
	tok := h.xetToken(objID, exp)
	cas := h.casBase(r)
	hd := w.Header()
	hd.Set("X-Xet-Access-Token", tok)
	hd.Set("X-Xet-Token-Expiration", strconv.FormatInt(exp, 10))
	hd.Set("X-Xet-Cas-Url", cas)
	hd.Set("X-Xet-Refresh-Route", "/api/"+rp.typ.Plural()+"/"+id+"/xet-read-token/"+url.PathEscape(rev))
	h.stats.noteXetToken()
	writeJSON(w, r, map[string]any{"accessToken": tok, "exp": exp, "casUrl": cas})
}
