package xet

import "fmt"

// The reconstruction documents of GET /v1/reconstructions/{file_id} and
// GET /v2/reconstructions/{file_id}. Field names follow xet-core's cas_types
// (QueryReconstructionResponse, QueryReconstructionResponseV2) and the
// download-protocol page. Hashes stay strings: they are map keys and URL
// parts, and a cache must pass on whatever the CAS sent.

// ChunkRange is a range of chunk indices in a xorb, end exclusive.
type ChunkRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// Len is the number of chunks in r.
func (r ChunkRange) Len() uint32 {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start
}

// Contains reports whether o lies within r, the test a client uses to find
// the fetch entry that serves a term.
func (r ChunkRange) Contains(o ChunkRange) bool { return r.Start <= o.Start && o.End <= r.End }

// ByteRange is a byte range, end INCLUSIVE (as HTTP Range and the spec's
// url_range).
type ByteRange struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// Len is the number of bytes in r.
func (r ByteRange) Len() uint64 {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start + 1
}

// Term is one piece of a file, in order: chunks Range of xorb Hash, which
// decode to UnpackedLength bytes. (xet-core's XorbReconstructionTerm, whose
// unpacked_length is a u32; uint64 here reads either.)
type Term struct {
	Hash           string     `json:"hash"`
	UnpackedLength uint64     `json:"unpacked_length"`
	Range          ChunkRange `json:"range"`
}

// FetchInfo is a v1 fetch_info entry: a presigned URL that serves chunks
// Range of a xorb when asked for bytes URLRange.
type FetchInfo struct {
	Range    ChunkRange `json:"range"`
	URL      string     `json:"url"`
	URLRange ByteRange  `json:"url_range"`
}

// ReconstructionV1 is the v1 document: the terms and, per xorb hash, where
// to fetch their chunks.
type ReconstructionV1 struct {
	OffsetIntoFirstRange uint64                 `json:"offset_into_first_range"`
	Terms                []Term                 `json:"terms"`
	FetchInfo            map[string][]FetchInfo `json:"fetch_info"`
}

// XorbRange is one range of a v2 fetch entry: chunks Chunks are the bytes
// Bytes of the xorb.
type XorbRange struct {
	Chunks ChunkRange `json:"chunks"`
	Bytes  ByteRange  `json:"bytes"`
}

// XorbFetch is a v2 fetch entry: one URL signed for all of Ranges at once,
// which a client requests with a single multi-range Range header.
type XorbFetch struct {
	URL    string      `json:"url"`
	Ranges []XorbRange `json:"ranges"`
}

// ReconstructionV2 is the v2 document: the v1 terms, with fetch information
// keyed per xorb as multi-range URLs.
type ReconstructionV2 struct {
	OffsetIntoFirstRange uint64                 `json:"offset_into_first_range"`
	Terms                []Term                 `json:"terms"`
	Xorbs                map[string][]XorbFetch `json:"xorbs"`
}

// V1 converts r to the v1 shape for v1 clients: each XorbRange becomes a
// FetchInfo with its entry's URL. The CAS signs a v2 URL for the exact Range
// header of its entry, so a URL from an entry with several ranges may be
// refused when fetched one range at a time; an entry with one range converts
// exactly. The terms are copied, not shared.
func (r *ReconstructionV2) V1() *ReconstructionV1 {
	if r == nil {
		return nil
	}
	v1 := &ReconstructionV1{
		OffsetIntoFirstRange: r.OffsetIntoFirstRange,
		Terms:                append([]Term(nil), r.Terms...),
		FetchInfo:            make(map[string][]FetchInfo, len(r.Xorbs)),
	}
	for hash, fetches := range r.Xorbs {
		n := 0
		for _, f := range fetches {
			n += len(f.Ranges)
		}
		infos := make([]FetchInfo, 0, n)
		for _, f := range fetches {
			for _, xr := range f.Ranges {
				infos = append(infos, FetchInfo{Range: xr.Chunks, URL: f.URL, URLRange: xr.Bytes})
			}
		}
		v1.FetchInfo[hash] = infos
	}
	return v1
}

// FileSize is the size of the file that terms reconstruct: the sum of their
// unpacked lengths.
func FileSize(terms []Term) uint64 {
	var n uint64
	for _, t := range terms {
		n += t.UnpackedLength
	}
	return n
}

// SliceTerms returns the whole terms that cover file bytes [start, end] (end
// inclusive, clamped to the last byte) and how many bytes of the first of
// them precede start — the offset_into_first_range of a ranged
// reconstruction. It works in whole terms because the cache does not know
// chunk sizes; the caller trims the tail. sub aliases terms.
//
// A start at or past the end of the file is ErrRangeNotSatisfiable, as the
// CAS answers 416; so is end < start.
func SliceTerms(terms []Term, start, end uint64) (sub []Term, offsetIntoFirst uint64, err error) {
	size := FileSize(terms)
	if start >= size {
		return nil, 0, fmt.Errorf("xet: range start %d, file size %d: %w", start, size, ErrRangeNotSatisfiable)
	}
	if end < start {
		return nil, 0, fmt.Errorf("xet: range %d-%d ends before it starts: %w", start, end, ErrRangeNotSatisfiable)
	}
	end = min(end, size-1)
	first := -1
	var off uint64 // file offset of terms[i]
	for i, t := range terms {
		next := off + t.UnpackedLength
		if first < 0 && start < next {
			first, offsetIntoFirst = i, start-off
		}
		if first >= 0 && end < next {
			return terms[first : i+1], offsetIntoFirst, nil
		}
		off = next
	}
	// Unreachable: end < size, so some term ends past it.
	return terms[first:], offsetIntoFirst, nil
}

// ReadChunks walks the serialized chunks (header and payload, repeated) in
// b — a xorb, or the bytes of a fetched xorb range — calling fn for each
// with its index, numbered from first, the offset of its header in b, the
// header and the payload (a sub-slice of b). A truncated or bad chunk is
// ErrFormat; an error from fn stops the walk and is returned as is.
func ReadChunks(b []byte, first uint32, fn func(index uint32, off int, h Header, payload []byte) error) error {
	index := first
	for off := 0; off < len(b); index++ {
		h, err := ParseHeader(b[off:])
		if err != nil {
			return fmt.Errorf("xet: chunk %d at byte %d: %w", index, off, err)
		}
		end := off + HeaderSize + int(h.CompressedLen)
		if end > len(b) {
			return fmt.Errorf("xet: chunk %d at byte %d: payload truncated (%d of %d bytes): %w",
				index, off, len(b)-off-HeaderSize, h.CompressedLen, ErrFormat)
		}
		if err := fn(index, off, h, b[off+HeaderSize:end]); err != nil {
			return err
		}
		off = end
	}
	return nil
}
