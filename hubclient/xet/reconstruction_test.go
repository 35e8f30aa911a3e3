package xet

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// terms of sizes 100, 50, 1, 200: file bytes [0,100) [100,150) [150,151)
// [151,351).
var sliceTerms = []Term{
	{Hash: "a", UnpackedLength: 100, Range: ChunkRange{0, 2}},
	{Hash: "b", UnpackedLength: 50, Range: ChunkRange{0, 1}},
	{Hash: "a", UnpackedLength: 1, Range: ChunkRange{2, 3}},
	{Hash: "c", UnpackedLength: 200, Range: ChunkRange{5, 9}},
}

func TestFileSize(t *testing.T) {
	if got := FileSize(sliceTerms); got != 351 {
		t.Fatalf("FileSize = %d", got)
	}
	if got := FileSize(nil); got != 0 {
		t.Fatalf("FileSize(nil) = %d", got)
	}
}

func TestSliceTerms(t *testing.T) {
	for _, c := range []struct {
		name       string
		start, end uint64
		first, n   int // sub = sliceTerms[first:first+n]
		offset     uint64
	}{
		{"whole file", 0, 350, 0, 4, 0},
		{"end past size is clamped", 0, 1 << 62, 0, 4, 0},
		{"first byte", 0, 0, 0, 1, 0},
		{"last byte", 350, 350, 3, 1, 199},
		{"last byte, open end", 350, 1 << 63, 3, 1, 199},
		{"last byte of a term", 99, 99, 0, 1, 99},
		{"first byte of a term", 100, 100, 1, 1, 0},
		{"exactly one term", 100, 149, 1, 1, 0},
		{"across a boundary", 99, 100, 0, 2, 99},
		{"one-byte term", 150, 150, 2, 1, 0},
		{"middle to middle", 120, 200, 1, 3, 20},
		{"ends on a term's last byte", 10, 150, 0, 3, 10},
	} {
		sub, off, err := SliceTerms(sliceTerms, c.start, c.end)
		want := sliceTerms[c.first : c.first+c.n]
		if err != nil || off != c.offset || !reflect.DeepEqual(sub, want) {
			t.Errorf("%s: SliceTerms(%d, %d) = %v, %d, %v; want %v, %d", c.name, c.start, c.end, sub, off, err, want, c.offset)
		}
		// The returned terms cover [start, min(end, size-1)].
		if err == nil {
			end := min(c.end, 350)
			if FileSize(sub) < off+end-c.start+1 {
				t.Errorf("%s: terms of %d bytes from offset %d do not reach byte %d", c.name, FileSize(sub), off, end)
			}
		}
	}
	for _, c := range []struct {
		terms      []Term
		start, end uint64
	}{
		{sliceTerms, 351, 400},   // start == size
		{sliceTerms, 1000, 2000}, // past the end
		{nil, 0, 0},              // empty file
		{sliceTerms, 10, 9},      // end before start
	} {
		if _, _, err := SliceTerms(c.terms, c.start, c.end); !errors.Is(err, ErrRangeNotSatisfiable) {
			t.Errorf("SliceTerms(%d terms, %d, %d): err = %v, want ErrRangeNotSatisfiable", len(c.terms), c.start, c.end, err)
		}
	}
	// Empty terms before the range are skipped.
	withEmpty := append([]Term{{Hash: "z"}}, sliceTerms...)
	if sub, off, err := SliceTerms(withEmpty, 0, 0); err != nil || off != 0 || sub[0].Hash != "a" {
		t.Errorf("leading empty term: %v, %d, %v", sub, off, err)
	}
}

// A v2 document in the shape of the api page and xet-core's
// QueryReconstructionResponseV2, written by hand.
const v2Doc = `{
  "offset_into_first_range": 7,
  "terms": [
    {"hash": "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456", "unpacked_length": 263873, "range": {"start": 1, "end": 4}},
    {"hash": "fedcba0987654321098765432109876543210fedcba0987654321098765432100", "unpacked_length": 143890, "range": {"start": 0, "end": 3}},
    {"hash": "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456", "unpacked_length": 3063572, "range": {"start": 3, "end": 43}}
  ],
  "xorbs": {
    "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456": [
      {"url": "https://transfer.example/xorb/a1?sig=1", "ranges": [
        {"chunks": {"start": 1, "end": 4}, "bytes": {"start": 57980, "end": 190000}},
        {"chunks": {"start": 3, "end": 43}, "bytes": {"start": 150000, "end": 1433008}}
      ]}
    ],
    "fedcba0987654321098765432109876543210fedcba0987654321098765432100": [
      {"url": "https://transfer.example/xorb/fe?sig=2", "ranges": [
        {"chunks": {"start": 0, "end": 3}, "bytes": {"start": 0, "end": 65670}}
      ]}
    ]
  }
}`

const hashA = "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456"
const hashF = "fedcba0987654321098765432109876543210fedcba0987654321098765432100"

func TestReconstructionV2JSON(t *testing.T) {
	var r ReconstructionV2
	if err := json.Unmarshal([]byte(v2Doc), &r); err != nil {
		t.Fatal(err)
	}
	if r.OffsetIntoFirstRange != 7 || len(r.Terms) != 3 || len(r.Xorbs) != 2 {
		t.Fatalf("decoded %+v", r)
	}
	if want := (Term{Hash: hashA, UnpackedLength: 3063572, Range: ChunkRange{3, 43}}); r.Terms[2] != want {
		t.Fatalf("term 2 = %+v", r.Terms[2])
	}
	a := r.Xorbs[hashA]
	if len(a) != 1 || a[0].URL != "https://transfer.example/xorb/a1?sig=1" || len(a[0].Ranges) != 2 ||
		a[0].Ranges[1] != (XorbRange{Chunks: ChunkRange{3, 43}, Bytes: ByteRange{150000, 1433008}}) {
		t.Fatalf("xorb a = %+v", a)
	}
	if a[0].Ranges[0].Bytes.Len() != 190000-57980+1 || a[0].Ranges[1].Chunks.Len() != 40 {
		t.Fatal("Len")
	}
	if !a[0].Ranges[1].Chunks.Contains(r.Terms[2].Range) || a[0].Ranges[0].Chunks.Contains(r.Terms[2].Range) {
		t.Fatal("Contains")
	}
	// Marshalling gives back the same document.
	out, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal([]byte(v2Doc), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n%s\nwant:\n%s", out, v2Doc)
	}
}

func TestReconstructionV1JSONFieldNames(t *testing.T) {
	// The download-protocol page's example, trimmed.
	const doc = `{"offset_into_first_range":0,"terms":[{"hash":"a1","unpacked_length":263873,"range":{"start":0,"end":4}}],` +
		`"fetch_info":{"a1":[{"range":{"start":0,"end":4},"url":"https://x/a1","url_range":{"start":0,"end":131071}}]}}`
	var r ReconstructionV1
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	want := FetchInfo{Range: ChunkRange{0, 4}, URL: "https://x/a1", URLRange: ByteRange{0, 131071}}
	if len(r.FetchInfo["a1"]) != 1 || r.FetchInfo["a1"][0] != want || r.Terms[0].UnpackedLength != 263873 {
		t.Fatalf("decoded %+v", r)
	}
	out, _ := json.Marshal(&r)
	if string(out) != doc {
		t.Fatalf("Marshal = %s\nwant %s", out, doc)
	}
}

func TestV1Conversion(t *testing.T) {
	var r ReconstructionV2
	if err := json.Unmarshal([]byte(v2Doc), &r); err != nil {
		t.Fatal(err)
	}
	v1 := r.V1()
	if v1.OffsetIntoFirstRange != 7 || !reflect.DeepEqual(v1.Terms, r.Terms) {
		t.Fatalf("V1 header = %d, %v", v1.OffsetIntoFirstRange, v1.Terms)
	}
	want := map[string][]FetchInfo{
		hashA: {
			{Range: ChunkRange{1, 4}, URL: "https://transfer.example/xorb/a1?sig=1", URLRange: ByteRange{57980, 190000}},
			{Range: ChunkRange{3, 43}, URL: "https://transfer.example/xorb/a1?sig=1", URLRange: ByteRange{150000, 1433008}},
		},
		hashF: {
			{Range: ChunkRange{0, 3}, URL: "https://transfer.example/xorb/fe?sig=2", URLRange: ByteRange{0, 65670}},
		},
	}
	if !reflect.DeepEqual(v1.FetchInfo, want) {
		t.Fatalf("FetchInfo = %+v\nwant %+v", v1.FetchInfo, want)
	}
	// The terms are a copy.
	v1.Terms[0].Hash = "changed"
	if r.Terms[0].Hash != hashA {
		t.Fatal("V1 shares its terms with the v2 document")
	}
	v1.Terms[0].Hash = hashA
	if (*ReconstructionV2)(nil).V1() != nil {
		t.Fatal("nil V1")
	}
	// Every term finds a containing fetch entry, as the download protocol
	// requires.
	for _, term := range v1.Terms {
		found := false
		for _, fi := range v1.FetchInfo[term.Hash] {
			found = found || fi.Range.Contains(term.Range)
		}
		if !found {
			t.Errorf("no fetch_info for term %+v", term)
		}
	}
}
