package fakehub

// Xet storage of the fake: content-defined chunking, real chunk/xorb/file
// hashes (package xet), global chunk dedup and packing into xorbs.
//
// Chunking is gearhash content-defined chunking with the spec's parameters
// (minimum 8 KiB, target 64 KiB, maximum 128 KiB, a cut where the top 16
// bits of the rolling hash are zero), but with the fake's own gear table
// (splitmix64 of the index), so boundaries differ from xet-core's while
// having the same properties: deterministic, and a cut depends only on the
// bytes since the previous cut, so files that share a prefix share every
// chunk that ends within it.

import (
	"encoding/binary"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient/xet"
)

const (
	xetMinChunk = 8 << 10
	xetMaxChunk = 128 << 10
	xetCutMask  = 0xffff000000000000

	// DefaultXorbLimit is the largest serialized xorb (chunk headers and
	// payloads) the fake packs, like xet-core's 64 MiB.
	DefaultXorbLimit = 64 << 20
	// maxXorbChunks is xet-core's limit on chunks per xorb.
	maxXorbChunks = 8192
	// DefaultXetMaxRanges is how many chunk ranges of one xorb a v2
	// reconstruction puts in one fetch entry before starting another.
	DefaultXetMaxRanges = 16
)

var gearTable = func() (t [256]uint64) {
	for i := range t {
		t[i] = genWord(0x6765617268617368, uint64(i))
	}
	return t
}()

// cutPoint is the length of the chunk at the start of data, which holds at
// least xetMaxChunk bytes unless it is the end of the content.
func cutPoint(data []byte) int {
	n := len(data)
	if n <= xetMinChunk {
		return n
	}
	end := min(n, xetMaxChunk)
	var h uint64
	for i := xetMinChunk - 64; i < end; i++ {
		h = h<<1 + gearTable[data[i]]
		if h&xetCutMask == 0 && i+1 >= xetMinChunk {
			return i + 1
		}
	}
	return end
}

// xetChunk is one stored chunk. Uncompressed payloads are not held: they are
// read from the content the chunk was cut from.
type xetChunk struct {
	hash    xet.Hash
	size    uint32 // uncompressed
	comp    xet.Compression
	clen    uint32 // payload bytes
	src     io.ReaderAt
	off     int64  // offset in src
	payload []byte // comp != None
}

func (c *xetChunk) header() xet.Header {
	return xet.Header{CompressedLen: c.clen, Compression: c.comp, UncompressedLen: c.size}
}

// xorb is a sealed (hash known) or open sequence of chunks.
type xorb struct {
	hash   xet.Hash
	name   string
	chunks []*xetChunk
	offs   []uint64 // offs[i]: byte offset of chunk i's header; offs[len(chunks)]: size
}

func (x *xorb) size() uint64 { return x.offs[len(x.chunks)] }

func (x *xorb) add(c *xetChunk) {
	if x.offs == nil {
		x.offs = []uint64{0}
	}
	x.offs = append(x.offs, x.size()+xet.HeaderSize+uint64(c.clen))
	x.chunks = append(x.chunks, c)
}

func (x *xorb) seal() {
	cs := make([]xet.Chunk, len(x.chunks))
	for i, c := range x.chunks {
		cs[i] = xet.Chunk{Hash: c.hash, Size: uint64(c.size)}
	}
	x.hash = xet.XorbHash(cs)
	x.name = x.hash.String()
}

type chunkLoc struct {
	x   *xorb
	idx uint32
}

// xetTerm is a run of consecutive chunks of one xorb in a file.
type xetTerm struct {
	x          *xorb
	start, end uint32 // chunk indices, end exclusive
	unpacked   uint64
}

// xetFile is a Xet file: its id and how it is made of xorb chunks.
type xetFile struct {
	hash    xet.Hash
	size    int64
	chunks  int
	terms   []xetTerm
	termOff []uint64 // file offset of each term; termOff[len(terms)] = size
}

type xetConfig struct {
	xorbLimit int64
	tokenTTL  time.Duration
	urlTTL    time.Duration
	maxRanges int
	corrupt   map[string]bool
	exact     bool // xorb GETs must ask for whole signed ranges, not parts of them
	noV2      bool // /v2/reconstructions answers 404
}

func defaultXetConfig() xetConfig {
	return xetConfig{xorbLimit: DefaultXorbLimit, tokenTTL: time.Hour, urlTTL: time.Hour, maxRanges: DefaultXetMaxRanges, corrupt: map[string]bool{}}
}

// SetXorbLimit sets the largest serialized xorb for Xet content registered
// afterwards (default DefaultXorbLimit, 64 MiB); n <= 0 restores it. A xorb
// always holds at least one chunk.
func (h *Hub) SetXorbLimit(n int64) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	if n <= 0 {
		n = DefaultXorbLimit
	}
	h.xet.xorbLimit = n
}

// SetXetTokenTTL sets how long Xet access tokens from the xet-read-token
// route stay valid (default one hour).
func (h *Hub) SetXetTokenTTL(d time.Duration) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.xet.tokenTTL = d
}

// SetXetURLTTL sets how long the signed xorb URLs of reconstructions stay
// valid (default one hour).
func (h *Hub) SetXetURLTTL(d time.Duration) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.xet.urlTTL = d
}

// SetXetV2 turns the v2 reconstruction route on (the default) or off: off,
// it answers 404, as a CAS without v2 would, and only v1 serves.
func (h *Hub) SetXetV2(on bool) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.xet.noV2 = !on
}

// SetXorbExactRanges makes xorb URLs refuse (403) a Range that is only part
// of a signed range: each requested range must be one of the signed ones,
// as a CAS that signs exact byte ranges would insist.
func (h *Hub) SetXorbExactRanges(on bool) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	h.xet.exact = on
}

// SetXetMaxRanges sets how many chunk ranges of one xorb a v2 fetch entry
// holds before the next entry starts (default 16); n <= 0 restores it.
func (h *Hub) SetXetMaxRanges(n int) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	if n <= 0 {
		n = DefaultXetMaxRanges
	}
	h.xet.maxRanges = n
}

// SetXorbCorruption makes the CAS serve wrong bytes for xorb (by name): in
// every chunk served, one payload byte is flipped (in the middle of an
// uncompressed payload, or a literal of an LZ4 block when the frame has no
// checksum), so the framing stays valid and chunks still decode, and only
// hashing the decoded chunks reveals it.
func (h *Hub) SetXorbCorruption(xorbName string, on bool) {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	c := make(map[string]bool, len(h.xet.corrupt)+1)
	for k, v := range h.xet.corrupt {
		c[k] = v
	}
	if on {
		c[xorbName] = true
	} else {
		delete(c, xorbName)
	}
	h.xet.corrupt = c
}

func (h *Hub) xetConfig() xetConfig {
	h.cfgMu.RLock()
	defer h.cfgMu.RUnlock()
	return h.xet
}

// XetTerm is a run of chunks of one xorb that a Xet file is made of.
type XetTerm struct {
	Xorb       string // xorb hash
	Start, End uint32 // chunk indices in the xorb, End exclusive
	Offset     int64  // file offset of the first byte
	Length     int64  // uncompressed bytes
}

// XetChunks is how the Xet file with this file id is stored: its terms in
// file order (nil for an unknown id). Two files sharing chunks list the
// same xorb and chunk indices for them.
func (h *Hub) XetChunks(fileHash string) []XetTerm {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f := h.xetFiles[fileHash]
	if f == nil {
		return nil
	}
	out := make([]XetTerm, len(f.terms))
	for i, t := range f.terms {
		out[i] = XetTerm{Xorb: t.x.name, Start: t.start, End: t.end, Offset: int64(f.termOff[i]), Length: int64(t.unpacked)}
	}
	return out
}

// XorbInfo describes a stored xorb.
type XorbInfo struct {
	Name   string
	Chunks int
	Size   int64 // serialized bytes: chunk headers and payloads
	// Compression counts the chunks stored with each scheme.
	Compression map[xet.Compression]int
}

// Xorb describes a stored xorb; ok is false if there is none of that name.
func (h *Hub) Xorb(name string) (info XorbInfo, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	x := h.xorbs[name]
	if x == nil {
		return XorbInfo{}, false
	}
	info = XorbInfo{Name: x.name, Chunks: len(x.chunks), Size: int64(x.size()), Compression: map[xet.Compression]int{}}
	for _, c := range x.chunks {
		info.Compression[c.comp]++
	}
	return info, true
}

// XorbBytes is a stored xorb's serialized chunks (headers and payloads, as
// the CAS serves them, uncorrupted); nil if there is none of that name.
func (h *Hub) XorbBytes(name string) []byte {
	h.mu.RLock()
	x := h.xorbs[name]
	h.mu.RUnlock()
	if x == nil {
		return nil
	}
	b := make([]byte, x.size())
	_, _ = xorbReader{x: x}.ReadAt(b, 0)
	return b
}

// newXetGenBlob is newGenBlob for a Xet file: the chunking (hashes and
// compression) runs alongside the sha256/sha1 pass.
func (h *Hub) newXetGenBlob(size int64, g genSpec) *blob {
	var chunks []*xetChunk
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunks = chunkContent(genReader{genSpec: g, size: size}, size)
	}()
	b := newGenBlob(size, g)
	<-done
	b.pending = chunks
	return b
}

// chunkContent cuts content into chunks and hashes and compresses each,
// reading the content once. Cutting is sequential; hashing and compression
// run on every CPU.
func chunkContent(src io.ReaderAt, size int64) []*xetChunk {
	type job struct {
		c    *xetChunk
		data []byte
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	jobs := make(chan job, 2*workers)
	bufs := sync.Pool{New: func() any { b := make([]byte, xetMaxChunk); return &b }}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := make([]byte, 0, 2*xetMaxChunk)
			for j := range jobs {
				scratch = fillChunk(j.c, j.data, scratch)
				b := j.data[:cap(j.data)]
				bufs.Put(&b)
			}
		}()
	}
	var out []*xetChunk
	const window = 8 << 20
	buf := make([]byte, 0, window+xetMaxChunk)
	var pos int64 // content offset of buf[0]
	for {
		// Fill the buffer.
		n := len(buf)
		want := min(int64(cap(buf)), size-pos)
		buf = buf[:want]
		if _, err := src.ReadAt(buf[n:], pos+int64(n)); err != nil && err != io.EOF {
			panic("fakehub: reading content: " + err.Error())
		}
		eof := pos+int64(len(buf)) >= size
		i := 0
		for i < len(buf) && (eof || len(buf)-i >= xetMaxChunk) {
			n := cutPoint(buf[i:])
			c := &xetChunk{size: uint32(n), src: src, off: pos + int64(i)}
			out = append(out, c)
			d := (*bufs.Get().(*[]byte))[:n]
			copy(d, buf[i:i+n])
			jobs <- job{c, d}
			i += n
		}
		if eof {
			break
		}
		pos += int64(i)
		buf = buf[:copy(buf, buf[i:])]
	}
	close(jobs)
	wg.Wait()
	return out
}

// fillChunk hashes a chunk and picks its storage: LZ4 when that shrinks it,
// ByteGrouping4LZ4 when that shrinks it more (tried only for data whose
// 4-byte lanes look grouped), else None.
func fillChunk(c *xetChunk, data []byte, scratch []byte) []byte {
	c.hash = xet.ChunkHash(data)
	c.comp, c.clen = xet.None, uint32(len(data))
	scratch = xet.AppendChunk(scratch[:0], data, xet.LZ4)
	best, bestComp := len(scratch)-xet.HeaderSize, xet.LZ4
	var payload []byte
	if best < len(data) {
		payload = append([]byte(nil), scratch[xet.HeaderSize:]...)
	}
	if laned(data) {
		scratch = xet.AppendChunk(scratch[:0], data, xet.ByteGrouping4LZ4)
		if n := len(scratch) - xet.HeaderSize; n < best && n < len(data) {
			best, bestComp = n, xet.ByteGrouping4LZ4
			payload = append(payload[:0], scratch[xet.HeaderSize:]...)
		}
	}
	if best < len(data) {
		c.comp, c.clen, c.payload = bestComp, uint32(best), payload
	}
	return scratch
}

// laned reports whether some byte lane (offset mod 4) of a sample of data
// takes few values, the case where byte grouping helps.
func laned(data []byte) bool {
	const sample = 4096
	if len(data) < 64 {
		return false
	}
	s := data[:min(len(data), sample)]
	for lane := range 4 {
		var seen [256]bool
		distinct := 0
		for i := lane; i < len(s); i += 4 {
			if !seen[s[i]] {
				seen[s[i]] = true
				distinct++
			}
		}
		if distinct <= 16 {
			return true
		}
	}
	return false
}

// registerXet stores b's chunks in the CAS (once per content) and returns
// its Xet file. Chunks already stored anywhere are referenced where they
// are; new ones are packed, in order, into new xorbs of at most the xorb
// limit. h.mu is held.
func (h *Hub) registerXet(b *blob) *xetFile {
	if b.xet != nil {
		return b.xet
	}
	chunks := b.pending
	if chunks == nil && b.size > 0 {
		chunks = chunkContent(b.reader(), b.size)
	}
	b.pending = nil
	limit := h.xetConfig().xorbLimit
	f := &xetFile{size: b.size, chunks: len(chunks)}
	leaves := make([]xet.Chunk, len(chunks))
	var cur *xorb
	seal := func() {
		if cur != nil {
			cur.seal()
			h.xorbs[cur.name] = cur
			cur = nil
		}
	}
	for i, c := range chunks {
		leaves[i] = xet.Chunk{Hash: c.hash, Size: uint64(c.size)}
		loc, ok := h.chunkIndex[c.hash]
		if !ok {
			if cur != nil && (int64(cur.size())+xet.HeaderSize+int64(c.clen) > limit || len(cur.chunks) >= maxXorbChunks) {
				seal()
			}
			if cur == nil {
				cur = &xorb{}
			}
			loc = chunkLoc{cur, uint32(len(cur.chunks))}
			cur.add(c)
			h.chunkIndex[c.hash] = loc
		}
		if n := len(f.terms); n > 0 && f.terms[n-1].x == loc.x && f.terms[n-1].end == loc.idx {
			f.terms[n-1].end++
			f.terms[n-1].unpacked += uint64(c.size)
		} else {
			f.terms = append(f.terms, xetTerm{x: loc.x, start: loc.idx, end: loc.idx + 1, unpacked: uint64(c.size)})
		}
	}
	seal()
	f.termOff = make([]uint64, len(f.terms)+1)
	for i, t := range f.terms {
		f.termOff[i+1] = f.termOff[i] + t.unpacked
	}
	f.hash = xet.FileHash(leaves)
	h.xetFiles[f.hash.String()] = f
	b.xet = f
	return f
}

// xorbReader is random access to a xorb's serialized chunks, optionally
// corrupted (see SetXorbCorruption).
type xorbReader struct {
	x       *xorb
	corrupt bool
}

func (xr xorbReader) ReadAt(p []byte, off int64) (int, error) {
	x := xr.x
	size := int64(x.size())
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p = p[:size-off]
		eof = io.EOF
	}
	// The chunk holding off.
	i := sort.Search(len(x.chunks), func(i int) bool { return int64(x.offs[i+1]) > off })
	n := 0
	for n < len(p) {
		c := x.chunks[i]
		base := int64(x.offs[i])
		in := off + int64(n) - base // offset inside the serialized chunk
		if in < xet.HeaderSize {
			var hb [xet.HeaderSize]byte
			xet.AppendHeader(hb[:0], c.header())
			n += copy(p[n:], hb[in:])
			continue
		}
		po := in - xet.HeaderSize // payload offset
		m := int(min(int64(len(p)-n), int64(c.clen)-po))
		seg := p[n : n+m]
		if c.comp == xet.None {
			if _, err := c.src.ReadAt(seg, c.off+po); err != nil && err != io.EOF {
				return n, err
			}
		} else {
			copy(seg, c.payload[po:])
		}
		if xr.corrupt {
			if fp := int64(corruptPos(c)); fp >= po && fp < po+int64(m) {
				seg[fp-po] ^= 0x55
			}
		}
		n += m
		i++
	}
	return n, eof
}

// corruptPos is the payload byte SetXorbCorruption flips in a chunk, or -1.
func corruptPos(c *xetChunk) int {
	if c.comp == xet.None {
		if c.clen == 0 {
			return -1
		}
		return int(c.clen / 2)
	}
	return lz4LiteralPos(c.payload)
}

// lz4LiteralPos finds a byte of an LZ4 frame whose change keeps the frame
// valid and its decoded length: a literal of the first block (or a byte of
// a stored block). -1 when the frame has checksums or is not understood.
func lz4LiteralPos(p []byte) int {
	if len(p) < 7 || binary.LittleEndian.Uint32(p) != 0x184D2204 {
		return -1
	}
	flg := p[4]
	if flg&0x10 != 0 || flg&0x04 != 0 { // block or content checksum
		return -1
	}
	i := 6 // magic, FLG, BD
	if flg&0x08 != 0 {
		i += 8
	}
	if flg&0x01 != 0 {
		i += 4
	}
	i++ // header checksum
	if len(p) < i+4 {
		return -1
	}
	bs := binary.LittleEndian.Uint32(p[i:])
	i += 4
	n := int(bs & 0x7fffffff)
	if n == 0 || len(p) < i+n {
		return -1
	}
	if bs&0x80000000 != 0 { // stored block
		return i + n/2
	}
	ll := int(p[i] >> 4)
	j := i + 1
	if ll == 15 {
		for j < i+n && p[j] == 255 {
			ll += 255
			j++
		}
		if j >= i+n {
			return -1
		}
		ll += int(p[j])
		j++
	}
	if ll == 0 || j+ll > i+n {
		return -1
	}
	return j
}
