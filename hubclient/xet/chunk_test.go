package xet

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{CompressedLen: 0, Compression: None, UncompressedLen: 0},
		{CompressedLen: 131072, Compression: None, UncompressedLen: 131072},
		{CompressedLen: 1234, Compression: LZ4, UncompressedLen: 65536},
		{CompressedLen: maxLen, Compression: ByteGrouping4LZ4, UncompressedLen: maxLen},
	} {
		b := AppendHeader([]byte("xx"), h)
		if len(b) != 2+HeaderSize {
			t.Fatalf("AppendHeader wrote %d bytes", len(b)-2)
		}
		got, err := ParseHeader(b[2:])
		if err != nil || got != h {
			t.Errorf("ParseHeader(AppendHeader(%+v)) = %+v, %v", h, got, err)
		}
	}
	// The spec's layout: version, u24 LE compressed length, scheme, u24 LE
	// uncompressed length.
	b := AppendHeader(nil, Header{CompressedLen: 0x010203, Compression: LZ4, UncompressedLen: 0x0a0b0c})
	if want := []byte{0, 3, 2, 1, 1, 0x0c, 0x0b, 0x0a}; !bytes.Equal(b, want) {
		t.Fatalf("AppendHeader = % x, want % x", b, want)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := AppendHeader(nil, Header{CompressedLen: 10, Compression: LZ4, UncompressedLen: 20})
	for name, b := range map[string][]byte{
		"version 1":        {1, 10, 0, 0, 1, 20, 0, 0},
		"scheme 3":         {0, 10, 0, 0, 3, 20, 0, 0},
		"scheme 'A'":       {0, 10, 0, 0, 'A', 20, 0, 0},
		"none, lengths ≠":  {0, 10, 0, 0, 0, 20, 0, 0},
		"truncated":        good[:7],
		"empty":            nil,
		"truncated, bad v": {9, 9},
	} {
		if _, err := ParseHeader(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: ParseHeader(% x) = %v, want ErrFormat", name, b, err)
		}
	}
}

func TestAppendHeaderPanicsOnOversize(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	AppendHeader(nil, Header{CompressedLen: maxLen + 1})
}

func testData() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 128<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	floats := make([]byte, 100_003) // slowly varying little-endian u32s, BG4's case
	for i := 0; i+4 <= len(floats); i += 4 {
		v := uint32(0x3f800000 + i*3)
		floats[i], floats[i+1], floats[i+2], floats[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return map[string][]byte{
		"empty":       {},
		"one byte":    {42},
		"seven bytes": []byte("abcdefg"),
		"zeros 64KiB": make([]byte, 64<<10),
		"pattern":     pattern(128 << 10),
		"pattern odd": pattern(65537),
		"floats":      floats,
		"random":      random,
		"random tail": random[:70_001],
	}
}

func TestAppendChunkDecodeChunkRoundTrip(t *testing.T) {
	for name, data := range testData() {
		for _, c := range []Compression{None, LZ4, ByteGrouping4LZ4} {
			prefix := []byte("prefix")
			b := AppendChunk(append([]byte(nil), prefix...), data, c)
			if !bytes.Equal(b[:len(prefix)], prefix) {
				t.Fatalf("%s/%v: AppendChunk clobbered dst", name, c)
			}
			h, err := ParseHeader(b[len(prefix):])
			if err != nil {
				t.Fatalf("%s/%v: %v", name, c, err)
			}
			payload := b[len(prefix)+HeaderSize:]
			if h.Compression != c || int(h.UncompressedLen) != len(data) || int(h.CompressedLen) != len(payload) {
				t.Fatalf("%s/%v: header %+v for %d bytes of data, %d of payload", name, c, h, len(data), len(payload))
			}
			if c != None && !bytes.Equal(payload[:4], []byte{0x04, 0x22, 0x4d, 0x18}) {
				t.Fatalf("%s/%v: payload is not an LZ4 frame: % x", name, c, payload[:4])
			}
			got, err := DecodeChunk(h, payload)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s/%v: DecodeChunk = %d bytes, %v", name, c, len(got), err)
			}
			got, err = DecodeChunkTo([]byte("keep"), h, payload)
			if err != nil || string(got[:4]) != "keep" || !bytes.Equal(got[4:], data) {
				t.Fatalf("%s/%v: DecodeChunkTo = %d bytes, %v", name, c, len(got), err)
			}
		}
	}
	// Compression does what it is for.
	d := testData()
	for name, c := range map[string]Compression{"zeros 64KiB": LZ4, "pattern": LZ4, "floats": ByteGrouping4LZ4} {
		if b := AppendChunk(nil, d[name], c); len(b) > len(d[name])/2 {
			t.Errorf("%s/%v: %d bytes compressed to %d", name, c, len(d[name]), len(b))
		}
	}
	if lz, bg := AppendChunk(nil, d["floats"], LZ4), AppendChunk(nil, d["floats"], ByteGrouping4LZ4); len(bg) >= len(lz) {
		t.Errorf("floats: BG4 %d bytes, plain LZ4 %d", len(bg), len(lz))
	}
}

func TestDecodeChunkLengthMismatch(t *testing.T) {
	data := pattern(10_000)
	for _, c := range []Compression{None, LZ4, ByteGrouping4LZ4} {
		b := AppendChunk(nil, data, c)
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		payload := b[HeaderSize:]
		for _, delta := range []int{-1, +1, -5000} {
			bad := h
			bad.UncompressedLen = uint32(int(h.UncompressedLen) + delta)
			if _, err := DecodeChunk(bad, payload); !errors.Is(err, ErrFormat) {
				t.Errorf("%v: uncompressed length %+d: err = %v, want ErrFormat", c, delta, err)
			}
		}
		// A payload that is not the header's length.
		if _, err := DecodeChunk(h, payload[:len(payload)-1]); !errors.Is(err, ErrFormat) {
			t.Errorf("%v: short payload: err = %v, want ErrFormat", c, err)
		}
	}
	// A corrupt frame.
	b := AppendChunk(nil, data, LZ4)
	h, _ := ParseHeader(b)
	for _, i := range []int{HeaderSize, HeaderSize + 4, HeaderSize + 6} { // magic, FLG, header checksum
		bad := append([]byte(nil), b...)
		bad[i] ^= 0xff
		if _, err := DecodeChunk(h, bad[HeaderSize:]); !errors.Is(err, ErrFormat) {
			t.Errorf("corrupt byte %d: err = %v, want ErrFormat", i, err)
		}
	}
	if _, err := DecodeChunk(Header{Compression: 7}, nil); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown compression: err = %v", err)
	}
}

// Frames written here must be standard LZ4 frames, and frames written by
// another encoder with options this package does not use itself (4 MiB and
// 256 KiB blocks, block and content checksums, a content size) must decode.
func TestLZ4FrameInterop(t *testing.T) {
	for name, data := range testData() {
		frame := appendLZ4Frame(nil, data)
		got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(frame)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: lz4.Reader on our frame: %d bytes, %v", name, len(got), err)
		}
		for _, opts := range [][]lz4.Option{
			nil,
			{lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)},
			{lz4.BlockSizeOption(lz4.Block256Kb), lz4.BlockChecksumOption(true)},
			{lz4.SizeOption(uint64(len(data))), lz4.ChecksumOption(true)},
			{lz4.CompressionLevelOption(lz4.Level9)},
		} {
			var buf bytes.Buffer
			w := lz4.NewWriter(&buf)
			if err := w.Apply(opts...); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := appendLZ4Decode(nil, buf.Bytes(), len(data))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s %v: decoding lz4.Writer's frame: %d bytes, %v", name, opts, len(got), err)
			}
			// A damaged checksum (or end mark) is caught.
			if b := append([]byte(nil), buf.Bytes()...); hasChecksum(b) {
				b[len(b)-1] ^= 1
				if _, err := appendLZ4Decode(nil, b, len(data)); !errors.Is(err, ErrFormat) {
					t.Errorf("%s %v: damaged frame: err = %v", name, opts, err)
				}
			}
		}
	}
}

func hasChecksum(frame []byte) bool { return frame[4]&(flagContentSum|flagBlockChecksum) != 0 }

// Concatenated and skippable frames are part of the LZ4 frame format.
func TestLZ4ConcatenatedFrames(t *testing.T) {
	a, b := pattern(1000), []byte("second frame")
	src := appendLZ4Frame(nil, a)
	src = append(src, 0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z') // skippable, 3 bytes
	src = appendLZ4Frame(src, b)
	got, err := appendLZ4Decode(nil, src, len(a)+len(b))
	if err != nil || !bytes.Equal(got, append(append([]byte(nil), a...), b...)) {
		t.Fatalf("concatenated frames: %d bytes, %v", len(got), err)
	}
}

func TestXXH32(t *testing.T) {
	for _, v := range []struct {
		in   string
		want uint32
	}{
		{"", 0x02cc5d05},
		{"abc", 0x32d153ff},
		{"Nobody inspects the spammish repetition", 0xe2293b2f},
	} {
		if got := xxh32([]byte(v.in)); got != v.want {
			t.Errorf("xxh32(%q) = %#08x, want %#08x", v.in, got, v.want)
		}
	}
}

// The xorb page's byte grouping: A1 A2 A3 A4 B1 … becomes A1 B1 C1 … A2 B2
// …, the first len%4 groups taking one byte more.
func TestBG4Layout(t *testing.T) {
	in := []byte("ABCDabcd0123XY") // 14 bytes: groups of 4, 4, 3, 3
	want := []byte("Aa0XBb1YCc2Dd3")
	got := make([]byte, len(in))
	bg4Split(got, in)
	if !bytes.Equal(got, want) {
		t.Fatalf("bg4Split(%q) = %q, want %q", in, got, want)
	}
	for n := 0; n <= 17; n++ {
		src := pattern(n)
		split, back := make([]byte, n), make([]byte, n)
		bg4Split(split, src)
		bg4Regroup(back, split)
		if !bytes.Equal(back, src) {
			t.Fatalf("regroup(split(%d bytes)) differs", n)
		}
		// The JS client's bg4_split_bytes, transcribed.
		q, r := n/4, n%4
		pos := [4]int{0, q, 0, 0}
		if r >= 1 {
			pos[1]++
		}
		pos[2] = pos[1] + q
		if r >= 2 {
			pos[2]++
		}
		pos[3] = pos[2] + q
		if r == 3 {
			pos[3]++
		}
		js := make([]byte, n)
		for g := 0; g < 4; g++ {
			for i, j := g, pos[g]; i < n; i, j = i+4, j+1 {
				js[j] = src[i]
			}
		}
		if !bytes.Equal(split, js) {
			t.Fatalf("%d bytes: split % x, JS client % x", n, split, js)
		}
	}
}

func TestReadChunks(t *testing.T) {
	datas := [][]byte{pattern(1000), []byte("hello"), pattern(70_000), {}}
	schemes := []Compression{LZ4, None, ByteGrouping4LZ4, None}
	var xorb []byte
	var offs []int
	for i, d := range datas {
		offs = append(offs, len(xorb))
		xorb = AppendChunk(xorb, d, schemes[i])
	}
	var seen []uint32
	err := ReadChunks(xorb, 5, func(index uint32, off int, h Header, payload []byte) error {
		i := int(index) - 5
		if off != offs[i] || h.Compression != schemes[i] {
			t.Errorf("chunk %d: offset %d, header %+v", index, off, h)
		}
		got, err := DecodeChunk(h, payload)
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Errorf("chunk %d: decode %v", index, err)
		}
		seen = append(seen, index)
		return nil
	})
	if err != nil || len(seen) != 4 || seen[0] != 5 || seen[3] != 8 {
		t.Fatalf("ReadChunks: %v, saw %v", err, seen)
	}
	if err := ReadChunks(nil, 0, func(uint32, int, Header, []byte) error { t.Fatal("called"); return nil }); err != nil {
		t.Fatalf("empty: %v", err)
	}
	nop := func(uint32, int, Header, []byte) error { return nil }
	for _, cut := range []int{1, HeaderSize - 1, HeaderSize, len(xorb) - 1} {
		if err := ReadChunks(xorb[:len(xorb)-cut], 0, nop); !errors.Is(err, ErrFormat) && cut != HeaderSize {
			t.Errorf("cut %d: err = %v, want ErrFormat", cut, err)
		}
	}
	// Cutting the empty last chunk's whole header leaves valid chunks.
	if err := ReadChunks(xorb[:len(xorb)-HeaderSize], 0, nop); err != nil {
		t.Errorf("without the last chunk: %v", err)
	}
	bad := append([]byte(nil), xorb...)
	bad[offs[1]] = 1 // version of chunk 1
	if err := ReadChunks(bad, 0, nop); !errors.Is(err, ErrFormat) {
		t.Errorf("bad version: err = %v", err)
	}
	stop := errors.New("stop")
	n := 0
	err = ReadChunks(xorb, 0, func(uint32, int, Header, []byte) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("fn error: %v after %d calls", err, n)
	}
}
