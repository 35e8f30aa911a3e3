package fakehub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/hubclient/xet"
)

const (
	xetRepo    = "org/xet"
	xetOther   = "org/xet-other"
	xetGated   = "org/xet-gated"
	sharedPref = 1<<20 + 12345 // bytes big.bin and shared.bin have in common
)

// xetFixture starts a Hub whose Xet files span several xorbs: big.bin (3 MiB,
// partly compressible) over 1 MiB xorbs, shared.bin sharing its first
// sharedPref bytes, and files in another and a gated repository.
func xetFixture(t *testing.T) *Hub {
	t.Helper()
	h := New()
	h.SetXorbLimit(1 << 20)
	h.AddRepo(RepoSpec{Type: hf.Model, ID: xetRepo, Files: []File{
		{Path: "big.bin", Size: 3 << 20, Seed: 21, Xet: true, Compressible: true},
		{Path: "shared.bin", Size: 2 << 20, Seed: 22, PrefixSeed: 21, PrefixLen: sharedPref, Xet: true, Compressible: true},
		{Path: "small.bin", Data: []byte("a small xet file\n"), Xet: true},
		{Path: "config.json", Data: configJSON},
	}})
	h.AddRepo(RepoSpec{Type: hf.Model, ID: xetOther, Files: []File{
		{Path: "other.bin", Size: 300 << 10, Seed: 23, Xet: true},
	}})
	h.AddRepo(RepoSpec{Type: hf.Model, ID: xetGated, Gated: "manual", Files: []File{
		{Path: "gated.bin", Size: 200 << 10, Seed: 24, Xet: true},
	}})
	h.AddToken(tokAlice, "alice")
	h.AddToken(tokBob, "bob")
	h.Grant(tokAlice, hf.Model, xetGated)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

type xetTok struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CasURL      string `json:"casUrl"`
}

func xetToken(t *testing.T, h *Hub, id string, headers ...string) xetTok {
	t.Helper()
	r := get(t, h.URL()+"/api/models/"+id+"/xet-read-token/main", headers...).wantStatus(t, 200)
	var tok xetTok
	r.json(t, &tok)
	return tok
}

func xetHashOf(h *Hub, id, path string) string { return h.FileInfo(hf.Model, id, "main", path).XetHash }

func reconstruction(t *testing.T, h *Hub, version, tok, hash string, headers ...string) resp {
	t.Helper()
	return get(t, h.CASURL()+"/"+version+"/reconstructions/"+hash, append([]string{bearer(tok)}, headers...)...)
}

func reconV2(t *testing.T, h *Hub, tok, hash string, headers ...string) *xet.ReconstructionV2 {
	t.Helper()
	var doc xet.ReconstructionV2
	reconstruction(t, h, "v2", tok, hash, headers...).wantStatus(t, 200).json(t, &doc)
	return &doc
}

// rangeHeader is the Range header for ranges, as hf.js builds it.
func rangeHeader(rs []xet.XorbRange) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d-%d", r.Bytes.Start, r.Bytes.End))
	}
	return "Range: bytes=" + strings.Join(parts, ",")
}

// fetchEntry GETs a v2 entry with one (multi-)range request and returns the
// bytes of each range.
func fetchEntry(t *testing.T, e xet.XorbFetch) [][]byte {
	t.Helper()
	r := get(t, e.URL, rangeHeader(e.Ranges)).wantStatus(t, http.StatusPartialContent)
	if len(e.Ranges) == 1 {
		want := fmt.Sprintf("bytes %d-%d/", e.Ranges[0].Bytes.Start, e.Ranges[0].Bytes.End)
		if !strings.HasPrefix(r.Header.Get("Content-Range"), want) {
			t.Fatalf("Content-Range %q, want %s*", r.Header.Get("Content-Range"), want)
		}
		return [][]byte{r.body}
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var out [][]byte
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("bytes %d-%d/", e.Ranges[i].Bytes.Start, e.Ranges[i].Bytes.End)
		if !strings.HasPrefix(p.Header.Get("Content-Range"), want) || p.Header.Get("Content-Type") == "" {
			t.Fatalf("part %d headers %v, want Content-Range %s*", i, p.Header, want)
		}
		b, _ := io.ReadAll(p)
		out = append(out, b)
	}
	if len(out) != len(e.Ranges) {
		t.Fatalf("%d parts for %d ranges", len(out), len(e.Ranges))
	}
	return out
}

// decodeRange decodes the chunks of a fetched range into m[xorb][index].
func decodeRange(t *testing.T, m map[string]map[uint32][]byte, xorbName string, first uint32, b []byte) {
	t.Helper()
	if m[xorbName] == nil {
		m[xorbName] = map[uint32][]byte{}
	}
	err := xet.ReadChunks(b, first, func(i uint32, _ int, hd xet.Header, payload []byte) error {
		d, err := xet.DecodeChunk(hd, payload)
		m[xorbName][i] = d
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reassemble downloads a v2 reconstruction the way hf.js does and returns
// the file bytes it describes (from offset_into_first_range on) and the
// chunks in file order.
func reassemble(t *testing.T, doc *xet.ReconstructionV2) ([]byte, []xet.Chunk, map[string]map[uint32][]byte) {
	t.Helper()
	chunks := map[string]map[uint32][]byte{}
	for name, entries := range doc.Xorbs {
		urls := map[string]bool{}
		for _, e := range entries {
			if urls[e.URL] {
				t.Fatalf("xorb %s: two entries share a URL", name)
			}
			urls[e.URL] = true
			if len(e.Ranges) > DefaultXetMaxRanges {
				t.Fatalf("entry with %d ranges", len(e.Ranges))
			}
			for i, part := range fetchEntry(t, e) {
				decodeRange(t, chunks, name, e.Ranges[i].Chunks.Start, part)
			}
		}
	}
	var out []byte
	var leaves []xet.Chunk
	for _, term := range doc.Terms {
		n := 0
		for i := term.Range.Start; i < term.Range.End; i++ {
			d, ok := chunks[term.Hash][i]
			if !ok {
				t.Fatalf("term %+v: chunk %d not fetched", term, i)
			}
			n += len(d)
			out = append(out, d...)
			leaves = append(leaves, xet.Chunk{Hash: xet.ChunkHash(d), Size: uint64(len(d))})
		}
		if uint64(n) != term.UnpackedLength {
			t.Fatalf("term %+v decodes to %d bytes", term, n)
		}
	}
	return out[doc.OffsetIntoFirstRange:], leaves, chunks
}

func TestXetTokenRoute(t *testing.T) {
	h := xetFixture(t)
	r := get(t, h.URL()+"/api/models/"+xetRepo+"/xet-read-token/main").wantStatus(t, 200)
	var tok xetTok
	r.json(t, &tok)
	r.wantHeader(t, "X-Xet-Access-Token", tok.AccessToken).wantHeader(t, "X-Xet-Cas-Url", tok.CasURL)
	r.wantHeader(t, "X-Xet-Token-Expiration", strconv.FormatInt(tok.Exp, 10))
	if tok.CasURL != h.CASURL() || tok.CasURL == h.URL() || tok.AccessToken == "" {
		t.Fatalf("token %+v, CAS %s, Hub %s", tok, h.CASURL(), h.URL())
	}
	if d := time.Until(time.Unix(tok.Exp, 0)); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("token expires in %v", d)
	}
	h.SetXetTokenTTL(time.Minute)
	if d := time.Until(time.Unix(xetToken(t, h, xetRepo).Exp, 0)); d > 61*time.Second {
		t.Fatalf("token TTL: %v", d)
	}
	if n := h.Stats().XetTokens; n != 2 {
		t.Fatalf("XetTokens %d", n)
	}
	// The Links name the token route and the real CAS.
	hash := xetHashOf(h, xetRepo, "big.bin")
	res := head(t, h.URL()+"/"+xetRepo+"/resolve/main/big.bin").wantStatus(t, http.StatusFound)
	res.wantHeader(t, "X-Xet-Hash", hash)
	commit := h.Ref(hf.Model, xetRepo, "main")
	res.wantHeader(t, "Link", "<"+h.URL()+"/api/models/"+xetRepo+"/xet-read-token/"+commit+`>; rel="xet-auth", <`+
		h.CASURL()+"/v1/reconstructions/"+hash+`>; rel="xet-reconstruction-info"`)
}

func TestXetGatedToken(t *testing.T) {
	h := xetFixture(t)
	u := h.URL() + "/api/models/" + xetGated + "/xet-read-token/main"
	get(t, u).wantError(t, http.StatusUnauthorized, hf.CodeGatedRepo)
	get(t, u, bearer(tokBob)).wantError(t, http.StatusForbidden, hf.CodeGatedRepo)
	get(t, u, bearer("hf_nope")).wantStatus(t, http.StatusUnauthorized)
	tok := xetToken(t, h, xetGated, bearer(tokAlice))
	doc := reconV2(t, h, tok.AccessToken, xetHashOf(h, xetGated, "gated.bin"))
	got, _, _ := reassemble(t, doc)
	if !bytes.Equal(got, h.Bytes(hf.Model, xetGated, "main", "gated.bin")) {
		t.Fatal("gated file content")
	}
}

func TestXetReconstructV2(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	hash := xetHashOf(h, xetRepo, "big.bin")
	want := h.Bytes(hf.Model, xetRepo, "main", "big.bin")
	h.ResetStats()
	doc := reconV2(t, h, tok, hash)
	if len(doc.Xorbs) < 3 || doc.OffsetIntoFirstRange != 0 || xet.FileSize(doc.Terms) != uint64(len(want)) {
		t.Fatalf("%d xorbs, offset %d, size %d", len(doc.Xorbs), doc.OffsetIntoFirstRange, xet.FileSize(doc.Terms))
	}
	got, leaves, chunks := reassemble(t, doc)
	if !bytes.Equal(got, want) {
		t.Fatal("reassembled content differs")
	}
	sum := sha256.Sum256(got)
	if hex.EncodeToString(sum[:]) != h.FileInfo(hf.Model, xetRepo, "main", "big.bin").SHA256 {
		t.Fatal("sha256")
	}
	if fh := xet.FileHash(leaves).String(); fh != hash {
		t.Fatalf("FileHash of the chunks %s, X-Xet-Hash %s", fh, hash)
	}
	// Every xorb was read whole: its chunks hash to its name.
	comp := map[xet.Compression]int{}
	for name, cs := range chunks {
		info, ok := h.Xorb(name)
		if !ok || info.Chunks != len(cs) {
			t.Fatalf("xorb %s: %+v, %d chunks fetched", name, info, len(cs))
		}
		if info.Size > 1<<20 {
			t.Fatalf("xorb %s of %d bytes over the limit", name, info.Size)
		}
		var xl []xet.Chunk
		for i := range uint32(len(cs)) {
			xl = append(xl, xet.Chunk{Hash: xet.ChunkHash(cs[i]), Size: uint64(len(cs[i]))})
		}
		if xh := xet.XorbHash(xl).String(); xh != name {
			t.Fatalf("xorb hash %s, name %s", xh, name)
		}
		for c, n := range info.Compression {
			comp[c] += n
		}
	}
	if comp[xet.None] == 0 || comp[xet.LZ4] == 0 || comp[xet.ByteGrouping4LZ4] == 0 {
		t.Fatalf("compression mix %v", comp)
	}
	s := h.Stats()
	for k, n := range s.XorbRangeFetches() {
		if n != 1 {
			t.Fatalf("%+v fetched %d times", k, n)
		}
	}
	if s.XorbRefetchedBytes("") != 0 || s.Reconstructions[hash] != 1 || len(s.XorbFetches) == 0 {
		t.Fatalf("stats: refetched %d, reconstructions %v, %d xorb fetches", s.XorbRefetchedBytes(""), s.Reconstructions, len(s.XorbFetches))
	}
	var total int64
	for name := range doc.Xorbs {
		info, _ := h.Xorb(name)
		total += info.Size
		if s.BodyFetches(name) == 0 {
			t.Fatalf("xorb %s not counted in Fetches", name)
		}
	}
	if s.XorbBytesServed("") != total {
		t.Fatalf("served %d xorb bytes, xorbs hold %d", s.XorbBytesServed(""), total)
	}
	// A small entry limit splits a xorb's ranges over several URLs.
	h.SetXetMaxRanges(1)
	small := reconV2(t, h, tok, xetHashOf(h, xetRepo, "shared.bin"))
	if got, _, _ := reassemble(t, small); !bytes.Equal(got, h.Bytes(hf.Model, xetRepo, "main", "shared.bin")) {
		t.Fatal("shared.bin with one range per entry")
	}
}

func TestXetReconstructV1(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	hash := xetHashOf(h, xetRepo, "big.bin")
	want := h.Bytes(hf.Model, xetRepo, "main", "big.bin")
	v2 := reconV2(t, h, tok, hash)
	for _, path := range []string{"/v1/reconstructions/", "/reconstruction/"} {
		var doc xet.ReconstructionV1
		get(t, h.CASURL()+path+hash, bearer(tok)).wantStatus(t, 200).json(t, &doc)
		if fmt.Sprint(doc.Terms) != fmt.Sprint(v2.Terms) {
			t.Fatalf("%s: terms differ from v2", path)
		}
		var out []byte
		for _, term := range doc.Terms {
			var fi *xet.FetchInfo
			for i, f := range doc.FetchInfo[term.Hash] {
				if f.Range.Start <= term.Range.Start && term.Range.End <= f.Range.End {
					fi = &doc.FetchInfo[term.Hash][i]
				}
			}
			if fi == nil {
				t.Fatalf("%s: no fetch_info for %+v", path, term)
			}
			r := get(t, fi.URL, fmt.Sprintf("Range: bytes=%d-%d", fi.URLRange.Start, fi.URLRange.End)).wantStatus(t, http.StatusPartialContent)
			m := map[string]map[uint32][]byte{}
			decodeRange(t, m, term.Hash, fi.Range.Start, r.body)
			for i := term.Range.Start; i < term.Range.End; i++ {
				out = append(out, m[term.Hash][i]...)
			}
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%s: reassembled content differs", path)
		}
	}
}

func TestXetRangedReconstruction(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	hash := xetHashOf(h, xetRepo, "big.bin")
	want := h.Bytes(hf.Model, xetRepo, "main", "big.bin")
	size := int64(len(want))
	full := reconV2(t, h, tok, hash)
	for _, rg := range [][2]int64{{0, 0}, {size / 2, size/2 + 200_000}, {size - 1, size - 1}, {12345, -1}, {-1, 1000}} {
		hdr := fmt.Sprintf("Range: bytes=%d-%d", rg[0], rg[1])
		a, b := rg[0], rg[1]
		switch {
		case rg[1] == -1:
			hdr, b = fmt.Sprintf("Range: bytes=%d-", rg[0]), size-1
		case rg[0] == -1:
			hdr, a, b = fmt.Sprintf("Range: bytes=-%d", rg[1]), size-rg[1], size-1
		}
		doc := reconV2(t, h, tok, hash, hdr)
		got, _, _ := reassemble(t, doc)
		if int64(len(got)) < b-a+1 || !bytes.Equal(got[:b-a+1], want[a:b+1]) {
			t.Fatalf("%s: content differs (%d bytes)", hdr, len(got))
		}
		// Cut at chunk granularity: less than a chunk on either side.
		if doc.OffsetIntoFirstRange >= xetMaxChunk || int64(len(got))-(b-a+1) >= xetMaxChunk {
			t.Fatalf("%s: offset %d, %d bytes for %d", hdr, doc.OffsetIntoFirstRange, len(got), b-a+1)
		}
		if len(doc.Terms) > len(full.Terms) {
			t.Fatalf("%s: %d terms", hdr, len(doc.Terms))
		}
	}
	r := reconstruction(t, h, "v2", tok, hash, fmt.Sprintf("Range: bytes=%d-", size)).wantStatus(t, http.StatusRequestedRangeNotSatisfiable)
	r.wantHeader(t, "Content-Range", fmt.Sprintf("bytes */%d", size))
	reconstruction(t, h, "v1", tok, hash, fmt.Sprintf("Range: bytes=%d-%d", size+5, size+10)).wantStatus(t, http.StatusRequestedRangeNotSatisfiable)
	reconstruction(t, h, "v2", tok, hash, "Range: bytes=9-3").wantStatus(t, http.StatusBadRequest)
}

func TestXetCASAuth(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	hash := xetHashOf(h, xetRepo, "big.bin")
	for _, v := range []string{"v1", "v2"} {
		r := get(t, h.CASURL()+"/"+v+"/reconstructions/"+hash).wantStatus(t, http.StatusUnauthorized)
		var e struct{ Error string }
		r.json(t, &e)
		if e.Error == "" {
			t.Fatalf("401 body %q", r.body)
		}
		reconstruction(t, h, v, tokAlice, hash).wantStatus(t, http.StatusUnauthorized) // a Hub token is no Xet token
		// A tampered signature (its last digit changed: "0" unless it is one).
		bad := tok[:len(tok)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(tok, "0")]
		reconstruction(t, h, v, bad, hash).wantStatus(t, http.StatusUnauthorized)
		reconstruction(t, h, v, tok, xetHashOf(h, xetOther, "other.bin")).wantStatus(t, http.StatusNotFound)
		reconstruction(t, h, v, tok, strings.Repeat("0", 64)).wantStatus(t, http.StatusNotFound)
		reconstruction(t, h, v, tok, "xyz").wantStatus(t, http.StatusBadRequest)
	}
	// A token of the other repository reads its file only.
	other := xetToken(t, h, xetOther).AccessToken
	reconstruction(t, h, "v2", other, xetHashOf(h, xetOther, "other.bin")).wantStatus(t, 200)
	reconstruction(t, h, "v2", other, hash).wantStatus(t, http.StatusNotFound)
	// Expiry.
	h.SetClock(func() time.Time { return time.Now().Add(time.Hour + time.Minute) })
	reconstruction(t, h, "v2", tok, hash).wantStatus(t, http.StatusUnauthorized)
	h.SetClock(time.Now)
	reconstruction(t, h, "v2", tok, hash).wantStatus(t, http.StatusOK)
}

func TestXetXorbURLs(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	doc := reconV2(t, h, tok, xetHashOf(h, xetRepo, "big.bin"), "Range: bytes=100000-600000")
	var e xet.XorbFetch
	for _, es := range doc.Xorbs {
		e = es[0]
	}
	rg := e.Ranges[0].Bytes
	get(t, e.URL, fmt.Sprintf("Range: bytes=%d-%d", rg.Start, rg.End)).wantStatus(t, http.StatusPartialContent)
	// Sub-ranges of the signed ranges are served.
	sub := get(t, e.URL, fmt.Sprintf("Range: bytes=%d-%d", rg.Start+1, rg.Start+10)).wantStatus(t, http.StatusPartialContent)
	if len(sub.body) != 10 {
		t.Fatalf("sub-range: %d bytes", len(sub.body))
	}
	get(t, e.URL, fmt.Sprintf("Range: bytes=%d-%d", rg.Start, rg.End+1)).wantStatus(t, http.StatusForbidden)
	get(t, e.URL, fmt.Sprintf("Range: bytes=%d-%d,%d-%d", rg.Start, rg.Start, rg.End+1, rg.End+2)).wantStatus(t, http.StatusForbidden)
	get(t, e.URL).wantStatus(t, http.StatusForbidden)
	// The signature covers the ranges, the xorb and the expiry.
	u, _ := url.Parse(e.URL)
	q := u.Query()
	q.Set("r", fmt.Sprintf("%d-%d", rg.Start, rg.End+100))
	u.RawQuery = q.Encode()
	get(t, u.String(), fmt.Sprintf("Range: bytes=%d-%d", rg.Start, rg.End+100)).wantStatus(t, http.StatusForbidden)
	// The Hub token is refused, like on the CDN.
	before := h.Stats().CDNAuthRejected
	get(t, e.URL, bearer(tokAlice), fmt.Sprintf("Range: bytes=%d-%d", rg.Start, rg.End)).wantStatus(t, http.StatusForbidden)
	if h.Stats().CDNAuthRejected != before+1 {
		t.Fatal("Authorization on a xorb URL not counted")
	}
	// Expired URLs answer 403, and a reconstruction reloaded afterwards works.
	h.SetXetURLTTL(time.Minute)
	short := reconV2(t, h, tok, xetHashOf(h, xetRepo, "small.bin"))
	var se xet.XorbFetch
	for _, es := range short.Xorbs {
		se = es[0]
	}
	h.SetClock(func() time.Time { return time.Now().Add(2 * time.Minute) })
	get(t, se.URL, rangeHeader(se.Ranges)).wantStatus(t, http.StatusForbidden)
	got, _, _ := reassemble(t, reconV2(t, h, tok, xetHashOf(h, xetRepo, "small.bin")))
	if string(got) != "a small xet file\n" {
		t.Fatalf("small.bin: %q", got)
	}
}

func TestXetDedup(t *testing.T) {
	h := xetFixture(t)
	big := h.XetChunks(xetHashOf(h, xetRepo, "big.bin"))
	shared := h.XetChunks(xetHashOf(h, xetRepo, "shared.bin"))
	if len(big) < 3 || len(shared) < 2 {
		t.Fatalf("terms: big %d, shared %d", len(big), len(shared))
	}
	// The shared prefix is whole terms of big.bin up to the last chunk ending in it.
	var sharedBytes int64
	for i, st := range shared {
		if st.Offset+st.Length > sharedPref {
			break
		}
		bt := big[i]
		if st.Xorb != bt.Xorb || st.Start != bt.Start || st.Offset != bt.Offset || st.End > bt.End {
			t.Fatalf("term %d: shared %+v, big %+v", i, st, bt)
		}
		sharedBytes = st.Offset + st.Length
	}
	if sharedBytes < sharedPref-xetMaxChunk {
		t.Fatalf("only %d of %d prefix bytes shared", sharedBytes, sharedPref)
	}
	bigXorbs := map[string]bool{}
	for _, bt := range big {
		bigXorbs[bt.Xorb] = true
	}
	last := shared[len(shared)-1]
	if bigXorbs[last.Xorb] {
		t.Fatal("shared.bin's own chunks were packed into big.bin's xorbs")
	}
	// Both files download, fetching every shared xorb range once in total when
	// a client reuses what it has fetched (here: nothing twice by construction).
	tok := xetToken(t, h, xetRepo).AccessToken
	for _, p := range []string{"big.bin", "shared.bin"} {
		got, _, _ := reassemble(t, reconV2(t, h, tok, xetHashOf(h, xetRepo, p)))
		if !bytes.Equal(got, h.Bytes(hf.Model, xetRepo, "main", p)) {
			t.Fatalf("%s differs", p)
		}
	}
	if h.Stats().XorbRefetchedBytes("") == 0 {
		t.Fatal("downloading both files refetched no shared bytes")
	}
	// Re-registering the same content (another repo) adds no xorb.
	n := len(h.xorbs)
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "org/copy", Files: []File{{Path: "b.bin", Size: 3 << 20, Seed: 21, Xet: true, Compressible: true}}})
	if len(h.xorbs) != n || xetHashOf(h, "org/copy", "b.bin") != xetHashOf(h, xetRepo, "big.bin") {
		t.Fatal("same content stored twice")
	}
}

func TestXetCorruption(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	hash := xetHashOf(h, xetRepo, "big.bin")
	name := h.XetChunks(hash)[0].Xorb
	clean := h.XorbBytes(name)
	h.SetXorbCorruption(name, true)
	doc := reconV2(t, h, tok, hash)
	var fetched []byte
	for _, e := range doc.Xorbs[name] {
		for _, part := range fetchEntry(t, e) {
			fetched = append(fetched, part...)
		}
	}
	if len(fetched) != len(clean) || bytes.Equal(fetched, clean) {
		t.Fatalf("corrupted xorb: %d bytes (clean %d), equal %v", len(fetched), len(clean), bytes.Equal(fetched, clean))
	}
	// Framing and decoding succeed; only the hashes tell.
	var leaves []xet.Chunk
	bad := 0
	err := xet.ReadChunks(fetched, 0, func(i uint32, off int, hd xet.Header, payload []byte) error {
		d, err := xet.DecodeChunk(hd, payload)
		if err != nil {
			return err
		}
		ch, _ := xet.ParseHeader(clean[off:])
		if ch != hd {
			return errors.New("header changed")
		}
		cd, _ := xet.DecodeChunk(ch, clean[off+xet.HeaderSize:off+xet.HeaderSize+int(ch.CompressedLen)])
		if !bytes.Equal(cd, d) {
			bad++
		}
		leaves = append(leaves, xet.Chunk{Hash: xet.ChunkHash(d), Size: uint64(len(d))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := h.Xorb(name)
	if bad != info.Chunks || info.Compression[xet.LZ4] == 0 || xet.XorbHash(leaves).String() == name {
		t.Fatalf("corruption: %d of %d chunks differ (%v)", bad, info.Chunks, info.Compression)
	}
	h.SetXorbCorruption(name, false)
	got, _, _ := reassemble(t, reconV2(t, h, tok, hash))
	if !bytes.Equal(got, h.Bytes(hf.Model, xetRepo, "main", "big.bin")) {
		t.Fatal("content after corruption is off")
	}
}

func TestXetThrottle(t *testing.T) {
	h := xetFixture(t)
	tok := xetToken(t, h, xetRepo).AccessToken
	doc := reconV2(t, h, tok, xetHashOf(h, xetRepo, "big.bin"), "Range: bytes=0-99999")
	h.SetThrottle(400<<10, 0)
	start := time.Now()
	reassemble(t, doc)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("throttled xorb fetch of ~100+ KiB took %v", d)
	}
}
