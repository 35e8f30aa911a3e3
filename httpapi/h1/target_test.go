package h1

import (
	"math/rand/v2"
	"net/url"
	"reflect"
	"testing"
)

func checkParseTarget(t *testing.T, s string) {
	t.Helper()
	got, gotErr := parseTarget(s)
	want, wantErr := url.ParseRequestURI(s)
	if (gotErr != nil) != (wantErr != nil) || (gotErr == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("parseTarget(%q) = %#v, %v; url.ParseRequestURI: %#v, %v", s, got, gotErr, want, wantErr)
	}
}

// TestParseTargetSameAsURL: parseTarget's shortcut returns what
// url.ParseRequestURI does, for every byte after '/' and in the middle of
// a path, and for random targets over an alphabet of every kind of byte
// net/url treats specially.
func TestParseTargetSameAsURL(t *testing.T) {
	for c := range 256 {
		checkParseTarget(t, "/"+string(rune(c)))
		checkParseTarget(t, "/a/"+string([]byte{byte(c)})+"b/c.json")
	}
	for _, s := range []string{
		"/", "//", "//host/x", "/gpt2/resolve/main/config.json", "/api/models/a/b/tree/main/x?recursive=1",
		"/a%2Fb", "/a%zz", "/a+b", "/a;b=c", "/a:b@c", "/~user/.x", "/a#b", "/*",
	} {
		checkParseTarget(t, s)
	}
	const alphabet = "aZ09-._~$&+,/:;=@%2F?#!'()*[] \"<>\\^`{|}\x7f\x80"
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := []byte{'/'}
		for range rng.IntN(12) {
			b = append(b, alphabet[rng.IntN(len(alphabet))])
		}
		checkParseTarget(t, string(b))
	}
}

// The shortcut is taken for the targets Hub clients send.
func TestParseTargetShortcut(t *testing.T) {
	for _, s := range []string{"/gpt2/resolve/main/config.json", "/datasets/a/b/resolve/0123abcd/data/train-00000-of-00002.parquet"} {
		for i := 0; i < len(s); i++ {
			if !plainPathChar[s[i]] {
				t.Errorf("%q: byte %q takes the slow path", s, s[i])
			}
		}
	}
}
