//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

package xet

import "testing"

func TestHotPathsDoNotAllocate(t *testing.T) {
	data := pattern(64 << 10)
	ChunkHash(data)
	if n := testing.AllocsPerRun(100, func() { ChunkHash(data) }); n != 0 {
		t.Errorf("ChunkHash: %v allocations per call", n)
	}
	dst := make([]byte, 0, len(data))
	for _, c := range []Compression{None, LZ4, ByteGrouping4LZ4} {
		b := AppendChunk(nil, data, c)
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		payload := b[HeaderSize:]
		if n := testing.AllocsPerRun(100, func() {
			if _, err := DecodeChunkTo(dst[:0], h, payload); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("DecodeChunkTo %v: %v allocations per call", c, n)
		}
		buf := make([]byte, 0, 2*len(data))
		if n := testing.AllocsPerRun(100, func() { AppendChunk(buf[:0], data, c) }); n != 0 {
			t.Errorf("AppendChunk %v: %v allocations per call", c, n)
		}
	}
}

func BenchmarkChunkHash(b *testing.B) {
	data := pattern(64 << 10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		ChunkHash(data)
	}
}

func BenchmarkDecodeChunkTo(b *testing.B) {
	data := pattern(64 << 10)
	for _, c := range []Compression{LZ4, ByteGrouping4LZ4} {
		chunk := AppendChunk(nil, data, c)
		h, _ := ParseHeader(chunk)
		dst := make([]byte, 0, len(data))
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeChunkTo(dst[:0], h, chunk[HeaderSize:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
