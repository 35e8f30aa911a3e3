package xet

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// Chunk payloads compressed with LZ4 or ByteGrouping4LZ4 are LZ4 *frames*
// (magic 0x184D2204), not bare blocks: xet-core writes them with lz4_flex's
// FrameEncoder and the JS client (@huggingface/hub) checks the frame magic
// before decoding. The frame is parsed here rather than through lz4.Reader
// so a chunk decodes straight into the caller's buffer, with no reader state
// or intermediate copies per chunk.

const (
	frameMagic        = 0x184D2204
	skippableMagic    = 0x184D2A50 // ..0x184D2A5F
	skippableMask     = 0xFFFFFFF0
	frameBlockMax     = 64 << 10 // what lz4_flex writes by default
	uncompressedBlock = 1 << 31
	flagVersion       = 0x40
	flagIndependent   = 0x20
	flagBlockChecksum = 0x10
	flagContentSize   = 0x08
	flagContentSum    = 0x04
	flagDictID        = 0x01
)

// frameHeader is the header this package writes: version 1, independent
// blocks of at most 64 KiB, no checksums and no content size — lz4_flex's
// defaults, which every Xet reader handles.
var frameHeader = func() [7]byte {
	flg, bd := byte(flagVersion|flagIndependent), byte(4<<4)
	return [7]byte{0x04, 0x22, 0x4D, 0x18, flg, bd, byte(xxh32([]byte{flg, bd}) >> 8)}
}()

var compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// appendLZ4Frame appends src compressed as one LZ4 frame to dst. Blocks that
// do not shrink are stored raw, as the frame format allows.
func appendLZ4Frame(dst, src []byte) []byte {
	c := compressors.Get().(*lz4.Compressor)
	defer compressors.Put(c)
	dst = append(dst, frameHeader[:]...)
	for len(src) > 0 {
		blk := src[:min(len(src), frameBlockMax)]
		src = src[len(blk):]
		bound := lz4.CompressBlockBound(len(blk))
		dst = grow(dst, 4+bound)
		at := len(dst)
		n, err := c.CompressBlock(blk, dst[at+4:at+4+bound])
		if err != nil || n == 0 || n >= len(blk) {
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(blk))|uncompressedBlock)
			dst = append(dst, blk...)
			continue
		}
		binary.LittleEndian.PutUint32(dst[at:at+4], uint32(n))
		dst = dst[:at+4+n]
	}
	return binary.LittleEndian.AppendUint32(dst, 0) // end mark
}

// appendLZ4Decode appends the want bytes that the LZ4 frames in src
// decompress to onto dst. Anything else — a bad frame, a checksum mismatch,
// more or fewer bytes than want — is ErrFormat.
func appendLZ4Decode(dst, src []byte, want int) ([]byte, error) {
	base := len(dst)
	dst = grow(dst, want)
	out := dst[base : base+want]
	n := 0
	bad := func(format string, args ...any) ([]byte, error) {
		return dst[:base], fmt.Errorf("xet: lz4 frame: "+fmt.Sprintf(format, args...)+": %w", ErrFormat)
	}
	if len(src) == 0 {
		return bad("empty payload")
	}
	for len(src) > 0 {
		if len(src) < 4 {
			return bad("truncated magic")
		}
		magic := binary.LittleEndian.Uint32(src)
		if magic&skippableMask == skippableMagic {
			if len(src) < 8 || uint64(len(src)-8) < uint64(binary.LittleEndian.Uint32(src[4:])) {
				return bad("truncated skippable frame")
			}
			src = src[8+binary.LittleEndian.Uint32(src[4:]):]
			continue
		}
		if magic != frameMagic {
			return bad("magic %#x", magic)
		}
		if len(src) < 7 {
			return bad("truncated header")
		}
		flg, bd := src[4], src[5]
		if flg&0xC0 != flagVersion || flg&0x02 != 0 || bd&0x8F != 0 || bd>>4 < 4 {
			return bad("descriptor %#x %#x", flg, bd)
		}
		if flg&flagDictID != 0 {
			return bad("dictionary frames are not supported")
		}
		descLen := 2
		if flg&flagContentSize != 0 {
			descLen += 8
		}
		if len(src) < 4+descLen+1 {
			return bad("truncated header")
		}
		if byte(xxh32(src[4:4+descLen])>>8) != src[4+descLen] {
			return bad("header checksum")
		}
		var contentSize uint64
		if flg&flagContentSize != 0 {
			contentSize = binary.LittleEndian.Uint64(src[6:])
		}
		src = src[4+descLen+1:]
		frameStart := n
		for {
			if len(src) < 4 {
				return bad("truncated block")
			}
			size := binary.LittleEndian.Uint32(src)
			src = src[4:]
			if size == 0 {
				break
			}
			raw := size&uncompressedBlock != 0
			size &^= uncompressedBlock
			if uint64(len(src)) < uint64(size) {
				return bad("truncated block")
			}
			data := src[:size]
			src = src[size:]
			if flg&flagBlockChecksum != 0 {
				if len(src) < 4 {
					return bad("truncated block checksum")
				}
				if xxh32(data) != binary.LittleEndian.Uint32(src) {
					return bad("block checksum")
				}
				src = src[4:]
			}
			if raw {
				if len(data) > want-n {
					return bad("decompresses to more than %d bytes", want)
				}
				n += copy(out[n:], data)
				continue
			}
			var dict []byte
			if flg&flagIndependent == 0 {
				// Linked blocks may refer to the 64 KiB decoded before them.
				dict = out[max(frameStart, n-64<<10):n]
			}
			k, err := lz4.UncompressBlockWithDict(data, out[n:], dict)
			if err != nil {
				return bad("bad block or more than %d bytes", want)
			}
			n += k
		}
		if flg&flagContentSum != 0 {
			if len(src) < 4 {
				return bad("truncated content checksum")
			}
			if xxh32(out[frameStart:n]) != binary.LittleEndian.Uint32(src) {
				return bad("content checksum")
			}
			src = src[4:]
		}
		if flg&flagContentSize != 0 && contentSize != uint64(n-frameStart) {
			return bad("content size %d, decoded %d", contentSize, n-frameStart)
		}
	}
	if n != want {
		return bad("decompresses to %d bytes, header says %d", n, want)
	}
	return dst[:base+want], nil
}

// grow makes room for n more bytes after len(b) without changing len(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n+len(b)/4)
	copy(nb, b)
	return nb
}

// bufs holds scratch space for byte grouping, so per-chunk work allocates
// nothing once warm.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

func getBuf(n int) *[]byte {
	b := bufs.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

func putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		bufs.Put(b)
	}
}

// bg4Offsets returns where each of the four byte groups starts in the
// grouped form. Group g holds the bytes at positions g, g+4, …; when the
// length is not a multiple of 4 the first len%4 groups hold one more.
func bg4Offsets(n int) (q int, o [4]int) {
	q, r := n/4, n%4
	for g := 1; g < 4; g++ {
		o[g] = o[g-1] + q
		if g-1 < r {
			o[g]++
		}
	}
	return q, o
}

// bg4Split writes src regrouped by byte position into dst (len(src) bytes),
// as ByteGrouping4LZ4 does before compressing.
func bg4Split(dst, src []byte) {
	q, o := bg4Offsets(len(src))
	g0, g1, g2, g3 := dst[o[0]:], dst[o[1]:], dst[o[2]:], dst[o[3]:]
	for i := 0; i < q; i++ {
		s := src[4*i : 4*i+4]
		g0[i], g1[i], g2[i], g3[i] = s[0], s[1], s[2], s[3]
	}
	for g := 0; g < len(src)%4; g++ {
		dst[o[g]+q] = src[4*q+g]
	}
}

// bg4Regroup undoes bg4Split: src is grouped, dst gets the original order.
func bg4Regroup(dst, src []byte) {
	q, o := bg4Offsets(len(src))
	g0, g1, g2, g3 := src[o[0]:], src[o[1]:], src[o[2]:], src[o[3]:]
	for i := 0; i < q; i++ {
		d := dst[4*i : 4*i+4]
		d[0], d[1], d[2], d[3] = g0[i], g1[i], g2[i], g3[i]
	}
	for g := 0; g < len(src)%4; g++ {
		dst[4*q+g] = src[o[g]+q]
	}
}

// xxh32 is XXH32 with seed 0, which LZ4 frames use for their header, block
// and content checksums. The lz4 package keeps its own copy internal.
func xxh32(b []byte) uint32 {
	const (
		p1 uint32 = 2654435761
		p2 uint32 = 2246822519
		p3 uint32 = 3266489917
		p4 uint32 = 668265263
		p5 uint32 = 374761393
	)
	round := func(acc, in uint32) uint32 { return bits.RotateLeft32(acc+in*p2, 13) * p1 }
	n := len(b)
	var h uint32
	if n >= 16 {
		v1, v2, v3, v4 := p1, p2, uint32(0), uint32(0)
		v1 += p2 // the spec's seed+p1+p2 and seed-p1, wrapping
		v4 -= p1
		for len(b) >= 16 {
			v1 = round(v1, binary.LittleEndian.Uint32(b[0:]))
			v2 = round(v2, binary.LittleEndian.Uint32(b[4:]))
			v3 = round(v3, binary.LittleEndian.Uint32(b[8:]))
			v4 = round(v4, binary.LittleEndian.Uint32(b[12:]))
			b = b[16:]
		}
		h = bits.RotateLeft32(v1, 1) + bits.RotateLeft32(v2, 7) + bits.RotateLeft32(v3, 12) + bits.RotateLeft32(v4, 18)
	} else {
		h = p5
	}
	h += uint32(n)
	for ; len(b) >= 4; b = b[4:] {
		h = bits.RotateLeft32(h+binary.LittleEndian.Uint32(b)*p3, 17) * p4
	}
	for _, c := range b {
		h = bits.RotateLeft32(h+uint32(c)*p5, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}
