package xet

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"lukechampine.com/blake3"
)

// The api page's worked example of the hex form: the hash whose bytes are
// 0, 1, …, 31, reordered to 7..0, 15..8, 23..16, 31..24. The page's string
// for it, 07060504030201000f0e0d0c0b0a0908171615141312111f1e1d1c1b1a1918, is
// 62 digits: it drops the "10" of the third group. The reordered bytes the
// page lists are right, and this is their hex.
func TestHashStringSpecExample(t *testing.T) {
	var h Hash
	for i := range h {
		h[i] = byte(i)
	}
	const want = "0706050403020100" + "0f0e0d0c0b0a0908" + "1716151413121110" + "1f1e1d1c1b1a1918"
	if got := h.String(); got != want {
		t.Fatalf("String() = %s, want %s", got, want)
	}
	p, err := ParseHash(want)
	if err != nil || p != h {
		t.Fatalf("ParseHash(%s) = %v, %v; want the bytes 0..31", want, p, err)
	}
}

// xet-core's test_hash_hex_string_endianness (merklehash/src/data_hash.rs).
func TestHashStringXetCoreVector(t *testing.T) {
	h := Hash{
		22, 175, 58, 132, 4, 75, 131, 214, 190, 153, 138, 66, 226, 3, 153, 242,
		204, 86, 80, 234, 249, 153, 80, 99, 159, 80, 65, 138, 236, 231, 149, 78,
	}
	const want = "d6834b04843aaf16f29903e2428a99be635099f9ea5056cc4e95e7ec8a41509f"
	if got := h.String(); got != want {
		t.Fatalf("String() = %s, want %s", got, want)
	}
	if p, err := ParseHash(want); err != nil || p != h {
		t.Fatalf("ParseHash round trip = %v, %v", p, err)
	}
	if p, err := ParseHash(strings.ToUpper(want)); err != nil || p != h {
		t.Fatalf("ParseHash(upper case) = %v, %v", p, err)
	}
}

func TestParseHashRejects(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, s := range []string{"", good[:63], good + "0", good[:63] + "g", " " + good[1:], good[:62] + "-1"} {
		if _, err := ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) succeeded", s)
		}
	}
}

func TestHashJSON(t *testing.T) {
	h := ChunkHash([]byte("json"))
	b, err := json.Marshal(map[string]Hash{"h": h})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"h":"` + h.String() + `"}`; string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
	var back map[string]Hash
	if err := json.Unmarshal(b, &back); err != nil || back["h"] != h {
		t.Fatalf("Unmarshal = %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"h":"zz"}`), &back); err == nil {
		t.Fatal("Unmarshal of a bad hash succeeded")
	}
}

// keyedHasher walks the BLAKE3 tree itself; hold it to blake3.Hasher at
// every chunk and SIMD-batch boundary up to past 128 KiB, and at lengths in
// between.
func TestKeyedHasherMatchesBLAKE3Hasher(t *testing.T) {
	k := newKeyedHasher(dataKey)
	data := pattern(200 << 10)
	check := func(n int) {
		ref := blake3.New(32, dataKey[:])
		ref.Write(data[:n])
		var want Hash
		copy(want[:], ref.Sum(nil))
		if got := k.sum(data[:n]); got != want {
			t.Fatalf("%d bytes: %s, want %s", n, got, want)
		}
	}
	for c := 0; c <= 140; c++ {
		for _, d := range []int{-1, 0, 1, 511} {
			if n := c*1024 + d; n >= 0 {
				check(n)
			}
		}
	}
	for n := 0; n < 200<<10; n += 4099 {
		check(n)
	}
	check(200 << 10)
}

// The hashing page gives no chunk hash of known bytes (its samples are
// files in the xet-team/xet-spec-reference-files dataset), so the chunk
// hash is checked for what it is made of: BLAKE3 keyed with DATA_KEY. The
// key is the page's, spelled out again here.
func TestChunkHashIsKeyedBLAKE3(t *testing.T) {
	key := []byte{
		102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
		157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
	}
	for _, n := range []int{0, 1, 1023, 1024, 1025, 64 << 10, 128<<10 + 7} {
		data := pattern(n)
		ref := blake3.New(32, key)
		ref.Write(data)
		var want Hash
		copy(want[:], ref.Sum(nil))
		if got := ChunkHash(data); got != want {
			t.Errorf("ChunkHash(%d bytes) = %s, want %s", n, got, want)
		}
		if unkeyed := Hash(blake3.Sum256(data)); unkeyed == want {
			t.Errorf("keyed and unkeyed hashes agree for %d bytes", n)
		}
	}
}

// The pooled keyed hashers against the official BLAKE3 keyed_hash vectors
// (key "whats the Elvish word for friend", input i%251), so a reused
// hasher is known not to carry state from one call to the next.
func TestKeyedHasherBLAKE3Vectors(t *testing.T) {
	var key [32]byte
	copy(key[:], "whats the Elvish word for friend")
	k := newKeyedHasher(key)
	for _, v := range []struct {
		n    int
		want string
	}{
		{0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
		{1, "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"},
		{1024, "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"},
		{1025, "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"},
		{8193, "954a2a75420c8d6547e3ba5b98d963e6fa6491addc8c023189cc519821b4a1f5"},
		{16384, "9e9fc4eb7cf081ea7c47d1807790ed211bfec56aa25bb7037784c13c4b707b0d"},
		{31744, "efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419"},
		{0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
	} {
		data := make([]byte, v.n)
		for i := range data {
			data[i] = byte(i % 251)
		}
		got := k.sum(data)
		if hex.EncodeToString(got[:]) != v.want {
			t.Errorf("keyed BLAKE3 of %d bytes = %x, want %s", v.n, got, v.want)
		}
	}
}

// The hashing page's example of an internal node's text. The page does not
// give the resulting hash.
func TestInternalNodeTextSpecExample(t *testing.T) {
	chunks := []Chunk{
		{mustHash(t, "1f6a2b8e9d3c4075a2e8c5fd4f0b763e6f3c1d7a9b2e6487de3f91ab7c6d5401"), 10000},
		{mustHash(t, "7c94fe2a38bdcf9b4d2a6f7e1e08ac35bc24a7903d6f5a0e7d1c2b93e5f748de"), 20000},
		{mustHash(t, "cfd18a92e0743bb09e56dbf76ea2c34d99b5a0cf271f8d429b6cd148203df061"), 25000},
		{mustHash(t, "e38d7c09a21b4cf8d0f92b3a85e6df19f7c20435e0b1c78a9d635f7b8c2e4da1"), 64000},
	}
	want := "1f6a2b8e9d3c4075a2e8c5fd4f0b763e6f3c1d7a9b2e6487de3f91ab7c6d5401 : 10000\n" +
		"7c94fe2a38bdcf9b4d2a6f7e1e08ac35bc24a7903d6f5a0e7d1c2b93e5f748de : 20000\n" +
		"cfd18a92e0743bb09e56dbf76ea2c34d99b5a0cf271f8d429b6cd148203df061 : 25000\n" +
		"e38d7c09a21b4cf8d0f92b3a85e6df19f7c20435e0b1c78a9d635f7b8c2e4da1 : 64000\n"
	if got := string(appendNodeText(nil, chunks)); got != want {
		t.Fatalf("node text:\n%s\nwant:\n%s", got, want)
	}
	// Three nodes and no cut before the end: one internal node is the root.
	three := chunks[:3]
	if n := nextCut(three); n != 3 {
		t.Fatalf("nextCut of 3 = %d", n)
	}
	ref := blake3.New(32, internalNodeKey[:])
	ref.Write(appendNodeText(nil, three))
	var want3 Hash
	copy(want3[:], ref.Sum(nil))
	if got := XorbHash(three); got != want3 {
		t.Fatalf("XorbHash of one node = %s, want %s", got, want3)
	}
}

// merkleCase is one of xet-core's reference cases (test_correctness in
// merklehash/src/aggregated_hashes.rs). Leaves are given as indices i into
// refLeaves with size 100*i, as the reference builds them.
type merkleCase struct {
	leaves   []int
	xorb     string // cas_node_hash
	fileHash string // file_node_hash (salt zero)
}

// refLeaves are xet-core's rh(i): random_from_seed(i), and zero for 0.
var refLeaves = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6",
	"c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72",
	"0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37",
	"adf8773496a9b7319b2e50dc98093f344053b17d8ad37100b9c07d9805988784",
	"4ac202caf347fc1e9c874b1ef6a1c5e619141eb775a6f43f0f0124ccd0060d9e",
	"b3b28636f65c149ea52eb1f94669466f70f033b54cea792824c696ba6ef3c389",
	"0e2c1a002aae913d2c0fc8ddfa4e9e14b7b311b3b0d458726d5d9f6a6318013c",
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

var merkleCases = []merkleCase{
	{nil,
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0000000000000000000000000000000000000000000000000000000000000000"},
	{[]int{0},
		"0000000000000000000000000000000000000000000000000000000000000000",
		"638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c"},
	{[]int{1},
		"cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6",
		"8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661"},
	{[]int{1, 2, 3},
		"71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc",
		"54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715"},
	{[]int{1, 1, 1, 1},
		"89f2ada89ff8c96763c6b25010e6dd76a4c05b1466207633ea559acf2093211b",
		"2cdba690d0e09563596e0cda626d43eb4c96ef1e994fe72d9b2f5a83cfcd36dd"},
	{[]int{1, 2, 1, 2},
		"90f8313ef12df385d237a067aded02562c35ded12116e32eba401dbc86c38031",
		"284ea045e5a579e99c21ec597c20de1fc0c09e7168162aac00db8f61b3d82dbb"},
	{[]int{1, 2, 1, 2, 3, 4},
		"52c826f99507aa05d0b45e9837fa1709e0485425cfbcb1e80db3905cf98b3ee9",
		"91d21684db364c8883ab8209fa5eb2e781cf07f37e1fa43e731c30839afe422f"},
	{[]int{0, 1, 0, 1},
		"e1755c85be07fd6b7a8d7becc85e6d8c5f507f2a3d38b316bcb6f97855e72188",
		"207caf24fce045ac6d873b4c6186a5a435d600d103e1ae345e55ddf1f4b7f7ef"},
	{[]int{0, 1, 0, 1, 0},
		"f36c6a6374a567efd36ed087aeb680b57e3af4e0b5b8e7be2593df4cb647a2de",
		"ab2f46d31855e1133b3b5b70e78f841394a648710a208923b221c1a8a0572a1f"},
	{[]int{1, 0},
		"e8660f81494ca836a58e395c1395ef97870ed71e2b113eec1fab6b3361f46dd6",
		"274d92f7e2acebaa2b8d63c0b5e7a4fc15814a606e3e3825d55609e671bcc5d9"},
	{[]int{3, 4, 5, 3},
		"73b9dc802ab03a0855c66823a18d95c2a785af594535756abf405038b6270cb8",
		"c7d5be75ef5ec12888027ad305141e4109e599494477661177475c84e12de48b"},
	{[]int{3, 4, 5, 5, 5},
		"2c1fd1eca47e284512fcb40fcf45a1874939f9b91c774d46aeba5d004d9d263d",
		"0799ba7ee2c3fed173a8e8d832cd13970ddc16070ffbc8aa6dcd77476f66dc73"},
	{seq(0, 8),
		"f62abe77e3fb9c954fe52b0028027ddc90c064c45951a4fd2211d87e5c0011db",
		"d1b068be5bbdb38992269e8efe61f601881e39f7a7585fd76883cc6ea5c23b44"},
	{func() []int { // (0..64).map(|i| i % 8)
		var s []int
		for i := 0; i < 64; i++ {
			s = append(s, i%8)
		}
		return s
	}(),
		"6554007c9b5d0a5e7918f79596a1b68815c1407535585435f5735db761f21b88",
		"a8640ab81d48854e00078e12b1ea8be5d90be0ffb5f73a15b7009981d093ddd8"},
	{repeat(1, 32),
		"0a0123c1617921883b7e13902095fcb86676e77c49120c33b233003b0af0e0a6",
		"53af4711fd1d5e5bdc7f931b6be932314d8d673cb16ad2482f6f5222eaf9e63d"},
	{append(seq(0, 8), 1, 1, 1, 1),
		"e7fc30b73ec9930593f80fe777b334e9d3bb73e45e6a79fa5784b2603446158b",
		"69e1af2fd6023ce133e0d1b90e32d1d42ef79f5a710f2b0accfc3a735e98de9d"},
	{func() []int { // (0..8).flat_map(|h| [h, h])
		var s []int
		for i := 0; i < 8; i++ {
			s = append(s, i, i)
		}
		return s
	}(),
		"636c65db520ec16e8166f9ec7a0cf9f74b26369077ac60160ec0221c86bc9f77",
		"6a90ad0d6f5246ac61f1de898c6944c03e14004a1368e6fb23387108c4d039e0"},
}

func (c merkleCase) chunks(t *testing.T) []Chunk {
	var out []Chunk
	for _, i := range c.leaves {
		out = append(out, Chunk{mustHash(t, refLeaves[i]), uint64(100 * i)})
	}
	return out
}

func TestXorbHashAndFileHashXetCoreVectors(t *testing.T) {
	for _, c := range merkleCases {
		chunks := c.chunks(t)
		if got := XorbHash(chunks); got.String() != c.xorb {
			t.Errorf("XorbHash(%v) = %s, want %s", c.leaves, got, c.xorb)
		}
		if got := FileHash(chunks); got.String() != c.fileHash {
			t.Errorf("FileHash(%v) = %s, want %s", c.leaves, got, c.fileHash)
		}
	}
}

// Two of the reference's salted file hashes, which check that the salt is
// the BLAKE3 key and the root the message, not the other way round.
func TestFileHashSaltXetCoreVectors(t *testing.T) {
	for _, v := range []struct {
		leaves     []int
		salt, want string
	}{
		{[]int{0},
			"f4aa7219b7bc6145df344b930c1cf63680037e13236f4b3b8f439aba1520d443",
			"3e44e4a200e05a69afc979eb2e0507817e4f0ddff128a97e563c0e05fed3bd25"},
		{[]int{1, 2, 3},
			"b286606709ef32a1cfede1e603a39f83fef56772d8234c0e35d8920071d80b69",
			"337f1f046e4cfc1057f0f3edbd87cf977fdfaf3c2b0c0031ca2d1d2a34aa2270"},
	} {
		chunks := merkleCase{leaves: v.leaves}.chunks(t)
		got := fileHashWithSalt(chunks, newKeyedHasher(mustHash(t, v.salt)))
		if got.String() != v.want {
			t.Errorf("salted file hash of %v = %s, want %s", v.leaves, got, v.want)
		}
	}
}

// Properties of the tree shape the vectors above pin down only by example.
func TestNextCutBounds(t *testing.T) {
	var zeroMod4, oneMod4 Hash // byte 24 is the low byte of the u64 cut on
	oneMod4[24] = 1
	mk := func(n int, h Hash) []Chunk {
		s := make([]Chunk, n)
		for i := range s {
			s[i].Hash = h
		}
		return s
	}
	for n := 0; n <= 12; n++ {
		// Every hash 0 mod 4: the first cut allowed, after 3 nodes.
		if got, want := nextCut(mk(n, zeroMod4)), min(n, 3); n > 2 && got != want || n <= 2 && got != n {
			t.Errorf("nextCut(%d nodes, all 0 mod 4) = %d", n, got)
		}
		// No hash 0 mod 4: the largest group, 9 nodes.
		if got := nextCut(mk(n, oneMod4)); got != min(n, 9) {
			t.Errorf("nextCut(%d nodes, none 0 mod 4) = %d, want %d", n, got, min(n, 9))
		}
	}
	// Only the u64 of bytes 24..31 decides, not the first bytes.
	s := mk(9, oneMod4)
	s[5].Hash = Hash{}
	s[5].Hash[0] = 1
	if got := nextCut(s); got != 6 {
		t.Errorf("nextCut with a cut at index 5 = %d, want 6", got)
	}
}

func mustHash(t *testing.T, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pattern is deterministic text, compressible but not trivially so.
func pattern(n int) []byte {
	const text = "the quick brown fox jumps over the lazy dog; "
	b := make([]byte, n)
	for i := range b {
		b[i] = text[i%len(text)] ^ byte(i>>12)
	}
	return b
}
