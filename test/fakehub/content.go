package fakehub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// blob is one file content, shared by every commit and repo that holds it.
// It is immutable once built.
type blob struct {
	size    int64
	data    []byte // nil for generated content
	seed    int64
	sha256  string
	gitSHA1 string // git blob sha1 of the content itself
}

// reader returns random access to the content.
func (b *blob) reader() io.ReaderAt {
	if b.data != nil {
		return byteReaderAt(b.data)
	}
	return genReader{seed: b.seed, size: b.size}
}

// newDataBlob hashes in-memory content.
func newDataBlob(data []byte) *blob {
	d := make([]byte, len(data))
	copy(d, data)
	return &blob{size: int64(len(d)), data: d, sha256: hf.SHA256Hex(d), gitSHA1: hf.GitBlobSHA1(d)}
}

// newGenBlob hashes generated content in one streaming pass, without holding it.
func newGenBlob(size, seed int64) *blob {
	s2 := sha256.New()
	s1 := sha1.New()
	s1.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	r := io.NewSectionReader(genReader{seed: seed, size: size}, 0, size)
	if _, err := io.CopyBuffer(io.MultiWriter(s1, s2), r, make([]byte, 1<<20)); err != nil {
		panic(fmt.Sprintf("fakehub: hashing generated content: %v", err))
	}
	return &blob{size: size, seed: seed, sha256: hex.EncodeToString(s2.Sum(nil)), gitSHA1: hex.EncodeToString(s1.Sum(nil))}
}

// byteReaderAt serves a byte slice through io.ReaderAt.
type byteReaderAt []byte

func (b byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fakehub: negative offset")
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// genReader is deterministic pseudo-random content: the 8-byte word i is
// splitmix64(seed + i*gamma), so any offset is computed without state.
type genReader struct {
	seed, size int64
}

const splitmixGamma = 0x9e3779b97f4a7c15

func genWord(seed int64, i uint64) uint64 {
	z := uint64(seed) + (i+1)*splitmixGamma
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (g genReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fakehub: negative offset")
	}
	if off >= g.size {
		return 0, io.EOF
	}
	var eof error
	if rem := g.size - off; int64(len(p)) > rem {
		p = p[:rem]
		eof = io.EOF
	}
	n := 0
	var buf [8]byte
	// Unaligned head.
	if r := off % 8; r != 0 {
		binary.LittleEndian.PutUint64(buf[:], genWord(g.seed, uint64(off/8)))
		n = copy(p, buf[r:])
	}
	// Whole words.
	for ; len(p)-n >= 8; n += 8 {
		binary.LittleEndian.PutUint64(p[n:], genWord(g.seed, uint64((off+int64(n))/8)))
	}
	// Tail.
	if n < len(p) {
		binary.LittleEndian.PutUint64(buf[:], genWord(g.seed, uint64((off+int64(n))/8)))
		n += copy(p[n:], buf[:])
	}
	return n, eof
}

// lfsPointer is the git-lfs pointer file stored in git for an LFS file.
func lfsPointer(sha256hex string, size int64) []byte {
	return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:" + sha256hex + "\nsize " + strconv.FormatInt(size, 10) + "\n")
}

// xetHashOf is a deterministic stand-in for the Xet file id of a content.
func xetHashOf(sha256hex string) string {
	s := sha256.Sum256([]byte("fakehub xet\x00" + sha256hex))
	return hex.EncodeToString(s[:])
}
