package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// FuzzParse: whatever the fast path's parser accepts, net/http's parser
// reads the same way (method, target, host, headers, Connection: close).
// What it refuses goes to net/http, so refusing is always safe.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"GET /gpt2/resolve/main/config.json HTTP/1.1\r\nHost: cache:8080\r\nUser-Agent: huggingface_hub/1.0\r\nAuthorization: Bearer hf_x\r\n\r\n",
		"HEAD /api/models/a/b HTTP/1.1\r\nhost: x\r\nrange: bytes=0-9\r\nConnection: close\r\n\r\n",
		"GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: [::1]:80\r\nX-Empty:\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nAccept: */*\t\r\n\r\n",
		"GET /x HTTP/1.0\r\nHost: x\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		end := headEnd(raw)
		if end == 0 {
			return
		}
		head := raw[:end]
		c := &conn{remote: "192.0.2.1:4242"}
		var req http.Request
		if !c.parse(head, &req) {
			return
		}
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, head)
		}
		got := fmt.Sprintf("%s %s %q %q %v %v", req.Method, req.URL, req.RequestURI, req.Host, req.Close, req.Header)
		want := fmt.Sprintf("%s %s %q %q %v %v", std.Method, std.URL, std.RequestURI, std.Host, std.Close, std.Header)
		if got != want {
			t.Fatalf("read differently:\n fast %s\n  std %s\n from %q", got, want, head)
		}
		if std.ContentLength != 0 || len(std.TransferEncoding) != 0 {
			t.Fatalf("accepted a request with a body: %q", head)
		}
	})
}

// FuzzParseTarget: the shortcut gives what url.ParseRequestURI gives.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"/gpt2/resolve/main/config.json", "/a%2Fb", "/a b", "/a?x=1", "//x", "/a!b", "/$&+,:;=@-._~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.HasPrefix(s, "/") {
			return
		}
		checkParseTarget(t, s)
	})
}
