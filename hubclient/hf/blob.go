package hf

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
)

// Algo is the hash that addresses a blob.
type Algo string

// Content-address algorithms: LFS files are addressed by the sha256 of their
// bytes, regular git files by their git blob sha1 ("blob <len>\0" + bytes).
const (
	SHA256  Algo = "sha256"
	GitSHA1 Algo = "gitsha1"
)

// BlobID is a content address: "sha256:<64 hex>" or "gitsha1:<40 hex>".
type BlobID struct {
	Algo Algo
	Hex  string
}

// NewBlobID validates a content address.
func NewBlobID(algo Algo, h string) (BlobID, error) {
	h = strings.ToLower(h)
	switch {
	case algo == SHA256 && isLowerHex(h, 64), algo == GitSHA1 && isLowerHex(h, 40):
		return BlobID{Algo: algo, Hex: h}, nil
	}
	return BlobID{}, fmt.Errorf("%w: content address %s:%q", ErrInvalid, algo, h)
}

// ParseBlobID parses the String form.
func ParseBlobID(s string) (BlobID, error) {
	algo, h, ok := strings.Cut(s, ":")
	if !ok {
		return BlobID{}, fmt.Errorf("%w: content address %q", ErrInvalid, s)
	}
	return NewBlobID(Algo(algo), h)
}

// BlobIDFromETag turns the Hub's normalised ETag into a content address: a
// 64-hex ETag (X-Linked-Etag of an LFS file) is a sha256, a 40-hex one a git sha1.
func BlobIDFromETag(etag string) (BlobID, error) {
	etag = NormalizeETag(etag)
	if len(etag) == 64 {
		return NewBlobID(SHA256, etag)
	}
	return NewBlobID(GitSHA1, etag)
}

// NormalizeETag strips a weak prefix and quotes, as huggingface_hub does.
func NormalizeETag(etag string) string {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	return strings.Trim(etag, `"`)
}

func (b BlobID) String() string { return string(b.Algo) + ":" + b.Hex }

// IsZero reports whether b is the zero value.
func (b BlobID) IsZero() bool { return b.Hex == "" }

// ETag is the quoted ETag the Hub sends for a file with this content address.
func (b BlobID) ETag() string { return `"` + b.Hex + `"` }

// LFS reports whether the blob is addressed by sha256 (an LFS or Xet file).
func (b BlobID) LFS() bool { return b.Algo == SHA256 }

// Verifier hashes a blob's bytes, in order, and says whether they match its address.
type Verifier struct {
	id BlobID
	h  hash.Hash
}

// NewVerifier starts verifying a blob of the given size.
func (b BlobID) NewVerifier(size int64) *Verifier {
	var h hash.Hash
	if b.Algo == GitSHA1 {
		h = sha1.New()
		h.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	} else {
		h = sha256.New()
	}
	return &Verifier{id: b, h: h}
}

// Write adds the next bytes of the blob.
func (v *Verifier) Write(p []byte) (int, error) { return v.h.Write(p) }

// OK reports whether the bytes written so far hash to the address.
func (v *Verifier) OK() bool { return hex.EncodeToString(v.h.Sum(nil)) == v.id.Hex }

// GitBlobSHA1 is git's object id of a blob: sha1("blob <len>\0" + data).
func GitBlobSHA1(data []byte) string {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(data)) + "\x00"))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256Hex is the hex sha256 of data.
func SHA256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// LogValue logs a content address in its string form.
func (b BlobID) LogValue() slog.Value { return slog.StringValue(b.String()) }
