// Package xet is the Xet storage format as the Hub's CAS serves it: Merkle
// hashes (chunks, xorbs, files), the chunk framing inside xorbs, and the
// reconstruction documents (v1 and v2) that tell a client which xorb byte
// ranges make up a file. It does no I/O; the cache (package node) and the
// fake Hub (test/fakehub) both build on it.
//
// The public specification is the Hub documentation's "Xet Protocol
// Specification" (hashing, xorb, api, download-protocol, file-id pages).
// Where the pages leave a detail out (the shape of the Merkle tree, the LZ4
// container), this package follows the reference implementation, xet-core.
package xet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"

	"lukechampine.com/blake3/guts"
)

// Sentinel errors. Match them with errors.Is; the errors returned wrap them
// with the detail (which chunk, which offset).
var (
	// ErrFormat: bytes that are not valid Xet data — a chunk header with an
	// unknown version or compression, a truncated header or payload, a bad
	// LZ4 frame, or a chunk that decompresses to a length other than its
	// header's.
	ErrFormat = errors.New("xet: malformed data")
	// ErrRangeNotSatisfiable: a byte range that starts at or past the end of
	// the file (the caller answers 416, as the CAS does).
	ErrRangeNotSatisfiable = errors.New("xet: range not satisfiable")
)

// Hash is a Xet Merkle hash: of a chunk, a xorb or a file. The bytes are the
// BLAKE3 digest as produced; only the String form reorders them.
type Hash [32]byte

// String is the hash in Xet's hex form, as URLs, X-Xet-Hash and
// reconstruction JSON carry it. It is not the plain hex of the bytes:
// xet-core stores a hash as four little-endian u64 and prints each as 16 hex
// digits, so every 8-byte group appears byte-reversed (api page, "Converting
// Hashes to Strings").
func (h Hash) String() string {
	var buf [64]byte
	return string(h.appendHex(buf[:0]))
}

const hexDigits = "0123456789abcdef"

// appendHex appends the String form without allocating, for the internal
// node text of the Merkle tree.
func (h Hash) appendHex(dst []byte) []byte {
	for g := 0; g < 32; g += 8 {
		for i := g + 7; i >= g; i-- {
			dst = append(dst, hexDigits[h[i]>>4], hexDigits[h[i]&0x0f])
		}
	}
	return dst
}

// ParseHash parses the String form (64 hex digits).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("xet: hash %q: want 64 hex digits, have %d characters", s, len(s))
	}
	for g := 0; g < 4; g++ {
		for k := 0; k < 8; k++ {
			hi, ok1 := unhex(s[g*16+2*k])
			lo, ok2 := unhex(s[g*16+2*k+1])
			if !ok1 || !ok2 {
				return Hash{}, fmt.Errorf("xet: hash %q: not hexadecimal", s)
			}
			h[g*8+7-k] = hi<<4 | lo
		}
	}
	return h, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// MarshalText writes the String form, so a Hash is a JSON string (the form
// the CAS uses everywhere) rather than an array of 32 numbers.
func (h Hash) MarshalText() ([]byte, error) { return h.appendHex(make([]byte, 0, 64)), nil }

// UnmarshalText parses the String form.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// The BLAKE3 keys of the hashing page. They separate the domains: a chunk's
// bytes can never be mistaken for an internal node's text, nor a file id
// for a xorb hash.
var (
	dataKey = [32]byte{
		102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
		157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
	}
	internalNodeKey = [32]byte{
		1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
		93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
	}
	// fileKey is all zeros: the file id is the Merkle root hashed once more
	// with a zero key (xet-core's file_node_hash, salt [0; 32]).
	fileKey [32]byte
)

// keyedHasher is BLAKE3 in keyed mode for one key, computed in one pass
// over a whole message. blake3.Hasher would do, but it hashes inputs of more
// than 1 KiB on goroutines it starts per call (some 30 allocations for a
// 64 KiB chunk) and New expands the key each time; ChunkHash runs for every
// chunk of multi-GB fills, so this walks the BLAKE3 tree itself on the
// package's SIMD primitives (guts), on the caller's goroutine, allocating
// nothing. The tests hold it to blake3.Hasher and the BLAKE3 vectors.
type keyedHasher struct{ key [8]uint32 }

func newKeyedHasher(key [32]byte) *keyedHasher {
	k := &keyedHasher{}
	for i := range k.key {
		k.key[i] = binary.LittleEndian.Uint32(key[4*i:])
	}
	return k
}

func (k *keyedHasher) sum(data []byte) (out Hash) {
	const (
		chunk  = guts.ChunkSize
		maxRun = guts.MaxSIMD // chunks CompressBuffer takes at once
		maxLog = 4            // log2(maxRun)
		flags  = guts.FlagKeyedHash
	)
	// Subtrees of the chunks before the last, at most one per height; the
	// last chunk (full or not, empty for an empty message) is kept back
	// because it closes the tree.
	var stack [64][8]uint32
	var counter uint64 // chunks pushed; bit i set: stack[i] holds a subtree
	push := func(cv [8]uint32, height int) {
		for counter&(1<<height) != 0 {
			cv = guts.ChainingValue(guts.ParentNode(stack[height], cv, &k.key, flags))
			height++
		}
		stack[height] = cv
	}
	lastLen := len(data) % chunk
	if lastLen == 0 && len(data) > 0 {
		lastLen = chunk
	}
	body, last := data[:len(data)-lastLen], data[len(data)-lastLen:]
	for len(body) > 0 {
		// The largest run of 2^h chunks that keeps subtrees aligned.
		h := min(maxLog, bits.Len(uint(len(body)/chunk))-1)
		if counter != 0 {
			h = min(h, bits.TrailingZeros64(counter))
		}
		n := (1 << h) * chunk
		var cv [8]uint32
		if n == maxRun*chunk {
			buf := (*[maxRun * chunk]byte)(body)
			cv = guts.ChainingValue(guts.CompressBuffer(buf, n, &k.key, counter, flags))
		} else {
			// CompressBuffer reads a whole buffer, even to use n bytes.
			var buf [maxRun * chunk]byte
			copy(buf[:], body[:n])
			cv = guts.ChainingValue(guts.CompressBuffer(&buf, n, &k.key, counter, flags))
		}
		push(cv, h)
		counter += 1 << h
		body = body[n:]
	}
	node := guts.CompressChunk(last, &k.key, counter, flags)
	for i := bits.TrailingZeros64(counter); i < bits.Len64(counter); i++ {
		if counter&(1<<i) != 0 {
			node = guts.ParentNode(stack[i], guts.ChainingValue(node), &k.key, flags)
		}
	}
	node.Flags |= guts.FlagRoot
	words := guts.CompressNode(node)
	for i := range 8 {
		binary.LittleEndian.PutUint32(out[4*i:], words[i])
	}
	return out
}

var (
	dataHasher = newKeyedHasher(dataKey)
	nodeHasher = newKeyedHasher(internalNodeKey)
	fileHasher = newKeyedHasher(fileKey)
)

// ChunkHash is the hash of one chunk's (uncompressed) bytes: BLAKE3 keyed
// with the spec's DATA_KEY.
func ChunkHash(data []byte) Hash { return dataHasher.sum(data) }

// Chunk is a leaf of the Merkle trees: a chunk's hash and uncompressed size.
type Chunk struct {
	Hash Hash
	Size uint64
}

// XorbHash is the hash of a xorb made of chunks, in order: the root of the
// Merkle tree over them. A single chunk is its own root; no chunks hash to
// all zeros.
func XorbHash(chunks []Chunk) Hash { return merkleRoot(chunks) }

// FileHash is the Xet file id of a file made of chunks, in order: the root of
// the same tree as XorbHash, hashed again with an all-zero key. An empty file
// has the all-zero id (xet-core returns it without the second hash).
func FileHash(chunks []Chunk) Hash {
	if len(chunks) == 0 {
		return Hash{}
	}
	return fileHashWithSalt(chunks, fileHasher)
}

func fileHashWithSalt(chunks []Chunk, salt *keyedHasher) Hash {
	root := merkleRoot(chunks)
	return salt.sum(root[:])
}

// meanBranching is xet-core's AGGREGATED_HASHES_MEAN_TREE_BRANCHING_FACTOR.
// The tree is not binary: each level is cut into groups of 3 to 9 nodes
// (fewer only for the last 1 or 2), a group ending after the first node from
// the third on whose hash is 0 mod 4. Cutting on content keeps the tree, and
// so the hashes of unchanged regions, stable under insertions.
const meanBranching = 4

// nextCut is how many of the nodes at the front of level form the next
// group (xet-core's next_cut).
func nextCut(level []Chunk) int {
	if len(level) <= 2 {
		return len(level)
	}
	end := min(2*meanBranching+1, len(level))
	for i := 2; i < end; i++ {
		// xet-core takes the hash mod 4 on its last u64 (bytes 24..31,
		// little-endian).
		if binary.LittleEndian.Uint64(level[i].Hash[24:])%meanBranching == 0 {
			return i + 1
		}
	}
	return end
}

// merkleRoot is xet-core's aggregated_node_hash: groups of nodes are
// replaced, level by level, by one node whose hash is the keyed hash of the
// lines "{hash} : {size}\n" and whose size is the sum, until one is left.
func merkleRoot(chunks []Chunk) Hash {
	switch len(chunks) {
	case 0:
		return Hash{}
	case 1:
		return chunks[0].Hash
	}
	level := append([]Chunk(nil), chunks...)
	// One line is 64 hex digits, " : ", up to 20 digits and "\n".
	buf := make([]byte, 0, (2*meanBranching+1)*88)
	for len(level) > 1 {
		w := 0
		for r := 0; r < len(level); {
			n := nextCut(level[r:])
			var size uint64
			for _, c := range level[r : r+n] {
				size += c.Size
			}
			buf = appendNodeText(buf[:0], level[r:r+n])
			// w <= r: the slot written has already been read.
			level[w] = Chunk{Hash: nodeHasher.sum(buf), Size: size}
			w++
			r += n
		}
		level = level[:w]
	}
	return level[0].Hash
}

// appendNodeText appends the text an internal node's hash is taken of: a
// line "{hash} : {size}\n" per child, the hash in its String form.
func appendNodeText(dst []byte, children []Chunk) []byte {
	for _, c := range children {
		dst = c.Hash.appendHex(dst)
		dst = append(dst, " : "...)
		dst = strconv.AppendUint(dst, c.Size, 10)
		dst = append(dst, '\n')
	}
	return dst
}

// Compression is how a chunk's bytes are stored in a xorb.
type Compression uint8

const (
	None             Compression = 0
	LZ4              Compression = 1
	ByteGrouping4LZ4 Compression = 2
)

// String is xet-core's name for the scheme.
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case LZ4:
		return "lz4"
	case ByteGrouping4LZ4:
		return "bg4-lz4"
	}
	return "compression(" + strconv.Itoa(int(c)) + ")"
}

// HeaderSize is the size of a chunk header in a xorb.
const HeaderSize = 8

// maxLen is the largest length a header's 3-byte fields hold. The spec caps
// a chunk at 128 KiB uncompressed; this package only enforces what the
// format can express, so it reads whatever a producer wrote.
const maxLen = 1<<24 - 1

// Header is a chunk's header in a xorb.
type Header struct {
	Version         uint8
	CompressedLen   uint32 // bytes of payload that follow the header
	Compression     Compression
	UncompressedLen uint32
}

// ParseHeader parses and checks a chunk header (version 0, a known
// compression, lengths within the format's limits). An uncompressed chunk
// must also have equal lengths, since its payload is its data.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("xet: chunk header truncated (%d of %d bytes): %w", len(b), HeaderSize, ErrFormat)
	}
	h := Header{
		Version:         b[0],
		CompressedLen:   uint32(b[1]) | uint32(b[2])<<8 | uint32(b[3])<<16,
		Compression:     Compression(b[4]),
		UncompressedLen: uint32(b[5]) | uint32(b[6])<<8 | uint32(b[7])<<16,
	}
	if h.Version != 0 {
		return h, fmt.Errorf("xet: chunk header version %d: %w", h.Version, ErrFormat)
	}
	switch h.Compression {
	case None:
		if h.CompressedLen != h.UncompressedLen {
			return h, fmt.Errorf("xet: uncompressed chunk with lengths %d and %d: %w", h.CompressedLen, h.UncompressedLen, ErrFormat)
		}
	case LZ4, ByteGrouping4LZ4:
	default:
		return h, fmt.Errorf("xet: chunk compression %d: %w", h.Compression, ErrFormat)
	}
	return h, nil
}

// AppendHeader appends h's 8 bytes to dst. It panics if a length does not
// fit in 3 bytes: no valid chunk comes near that, so it is a caller's bug.
func AppendHeader(dst []byte, h Header) []byte {
	if h.CompressedLen > maxLen || h.UncompressedLen > maxLen {
		panic(fmt.Sprintf("xet: chunk lengths %d/%d do not fit a header", h.CompressedLen, h.UncompressedLen))
	}
	return append(dst,
		h.Version,
		byte(h.CompressedLen), byte(h.CompressedLen>>8), byte(h.CompressedLen>>16),
		byte(h.Compression),
		byte(h.UncompressedLen), byte(h.UncompressedLen>>8), byte(h.UncompressedLen>>16))
}

// AppendChunk appends data framed as one chunk (header and payload)
// compressed with c to dst. It uses c even when that makes the chunk larger;
// the spec's advice to store such chunks uncompressed is the caller's
// choice to make (compare the lengths and use None). It panics on an unknown
// c or on data longer than a header can describe.
func AppendChunk(dst []byte, data []byte, c Compression) []byte {
	if len(data) > maxLen {
		panic(fmt.Sprintf("xet: chunk of %d bytes does not fit a header", len(data)))
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // the header, once the payload's length is known
	switch c {
	case None:
		dst = append(dst, data...)
	case LZ4:
		dst = appendLZ4Frame(dst, data)
	case ByteGrouping4LZ4:
		tmp := getBuf(len(data))
		bg4Split(*tmp, data)
		dst = appendLZ4Frame(dst, *tmp)
		putBuf(tmp)
	default:
		panic(fmt.Sprintf("xet: unknown compression %d", c))
	}
	h := Header{
		CompressedLen:   uint32(len(dst) - start - HeaderSize),
		Compression:     c,
		UncompressedLen: uint32(len(data)),
	}
	var hb [HeaderSize]byte
	copy(dst[start:], AppendHeader(hb[:0], h))
	return dst
}

// DecodeChunk returns a chunk's uncompressed bytes from its header and
// payload, checking the decompressed length against the header.
func DecodeChunk(h Header, payload []byte) ([]byte, error) {
	return DecodeChunkTo(make([]byte, 0, h.UncompressedLen), h, payload)
}

// DecodeChunkTo is DecodeChunk appending to dst, so a caller decoding many
// chunks can reuse one buffer. On error dst's contents past its length are
// unspecified.
func DecodeChunkTo(dst []byte, h Header, payload []byte) ([]byte, error) {
	if uint32(len(payload)) != h.CompressedLen || len(payload) > maxLen {
		return dst, fmt.Errorf("xet: chunk payload of %d bytes, header says %d: %w", len(payload), h.CompressedLen, ErrFormat)
	}
	want := int(h.UncompressedLen)
	switch h.Compression {
	case None:
		if len(payload) != want {
			return dst, fmt.Errorf("xet: uncompressed chunk of %d bytes, header says %d: %w", len(payload), want, ErrFormat)
		}
		return append(dst, payload...), nil
	case LZ4:
		return appendLZ4Decode(dst, payload, want)
	case ByteGrouping4LZ4:
		tmp := getBuf(want)
		defer putBuf(tmp)
		if _, err := appendLZ4Decode((*tmp)[:0], payload, want); err != nil {
			return dst, err
		}
		base := len(dst)
		dst = grow(dst, want)
		bg4Regroup(dst[base:base+want], *tmp)
		return dst[:base+want], nil
	}
	return dst, fmt.Errorf("xet: chunk compression %d: %w", h.Compression, ErrFormat)
}
