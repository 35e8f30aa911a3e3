package fakehub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// blob is one file content, shared by every commit and repo that holds it.
// It is immutable once built.
type blob struct {
	size    int64
	data    []byte  // nil for generated content
	gen     genSpec // generated content (data == nil)
	sha256  string
	gitSHA1 string      // git blob sha1 of the content itself
	xet     *xetFile    // chunks and terms, once registered as a Xet file (under Hub.mu)
	pending []*xetChunk // chunks cut ahead of registration (newXetGenBlob)
}

// reader returns random access to the content.
func (b *blob) reader() io.ReaderAt {
	if b.data != nil {
		return byteReaderAt(b.data)
	}
	return genReader{genSpec: b.gen, size: b.size}
}

// newDataBlob hashes in-memory content.
func newDataBlob(data []byte) *blob {
	d := make([]byte, len(data))
	copy(d, data)
	return &blob{size: int64(len(d)), data: d, sha256: hf.SHA256Hex(d), gitSHA1: hf.GitBlobSHA1(d)}
}

// newGenBlob hashes generated content in one streaming pass, without holding it.
func newGenBlob(size int64, g genSpec) *blob {
	s2 := sha256.New()
	s1 := sha1.New()
	s1.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	r := io.NewSectionReader(genReader{genSpec: g, size: size}, 0, size)
	if _, err := io.CopyBuffer(io.MultiWriter(s1, s2), r, make([]byte, 1<<20)); err != nil {
		panic(fmt.Sprintf("fakehub: hashing generated content: %v", err))
	}
	return &blob{size: size, gen: g, sha256: hex.EncodeToString(s2.Sum(nil)), gitSHA1: hex.EncodeToString(s1.Sum(nil))}
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

// genSpec names generated content. The byte at offset o depends only on the
// spec and o, never on the size, so generated files with the same spec share
// every prefix.
type genSpec struct {
	seed         int64
	compressible bool  // mixed blocks of random, text-like and float-like bytes
	prefixSeed   int64 // the first prefixLen bytes are those of {seed: prefixSeed}
	prefixLen    int64
}

// genReader is deterministic pseudo-random content: the 8-byte word i is
// splitmix64(seed + i*gamma), so any offset is computed without state.
type genReader struct {
	genSpec
	size int64
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
	if off < g.prefixLen {
		n = int(min(int64(len(p)), g.prefixLen-off))
		fillGen(p[:n], off, g.prefixSeed, g.compressible)
	}
	fillGen(p[n:], off+int64(n), g.seed, g.compressible)
	return len(p), eof
}

// mixBlock is the size of the blocks of compressible content; block k is
// random, text-like or float-like by (k + seed) mod 3.
const mixBlock = 160 << 10

// fillGen fills p with generated content at offset off.
func fillGen(p []byte, off int64, seed int64, compressible bool) {
	if !compressible {
		fillRandom(p, off, seed)
		return
	}
	for len(p) > 0 {
		blk := off / mixBlock
		n := int(min(int64(len(p)), (blk+1)*mixBlock-off))
		switch uint64(blk+seed) % 3 {
		case 0:
			fillRandom(p[:n], off, seed)
		case 1:
			fillText(p[:n], off, seed)
		default:
			fillFloats(p[:n], off, seed)
		}
		p, off = p[n:], off+int64(n)
	}
}

// fillRandom is incompressible content: little-endian words of genWord.
func fillRandom(p []byte, off int64, seed int64) {
	n := 0
	var buf [8]byte
	// Unaligned head.
	if r := off % 8; r != 0 {
		binary.LittleEndian.PutUint64(buf[:], genWord(seed, uint64(off/8)))
		n = copy(p, buf[r:])
	}
	// Whole words.
	for ; len(p)-n >= 8; n += 8 {
		binary.LittleEndian.PutUint64(p[n:], genWord(seed, uint64((off+int64(n))/8)))
	}
	// Tail.
	if n < len(p) {
		binary.LittleEndian.PutUint64(buf[:], genWord(seed, uint64((off+int64(n))/8)))
		copy(p[n:], buf[:])
	}
}

// textWords are the 8-byte slots of text-like content (LZ4 shrinks it).
var textWords = func() [32][8]byte {
	words := strings.Fields("the of and to in is was for that with as on by at from his " +
		"an were are which this be has had it not or have also first new one their")
	var out [32][8]byte
	for i := range out {
		w := words[i%len(words)] + " "
		if i%7 == 6 {
			w = words[i%len(words)] + ".\n"
		}
		copy(out[i][:], (w + "        ")[:8])
	}
	return out
}()

// fillText is text-like content: 8-byte words from a small vocabulary.
func fillText(p []byte, off int64, seed int64) {
	for n := 0; n < len(p); {
		o := off + int64(n)
		w := &textWords[genWord(seed^0x5445585400000000, uint64(o/8))%32]
		n += copy(p[n:], w[o%8:])
	}
}

// fillFloats is float32-like content: two random low bytes, then an
// exponent byte from two values and a fixed sign byte, which byte grouping
// (ByteGrouping4LZ4) shrinks and plain LZ4 does not.
func fillFloats(p []byte, off int64, seed int64) {
	var f [4]byte
	for n := 0; n < len(p); {
		o := off + int64(n)
		v := genWord(seed^0x464c4f4100000000, uint64(o/4))
		f[0], f[1], f[2], f[3] = byte(v), byte(v>>8), 0xc0|byte(v>>16)&1, 0x3f
		n += copy(p[n:], f[o%4:])
	}
}

// lfsPointer is the git-lfs pointer file stored in git for an LFS file.
func lfsPointer(sha256hex string, size int64) []byte {
	return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:" + sha256hex + "\nsize " + strconv.FormatInt(size, 10) + "\n")
}
