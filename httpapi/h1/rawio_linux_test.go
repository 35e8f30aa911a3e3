package h1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hfcache/hfcache/test/tcppair"
)

// TestRawIOWrite: a head and a body far larger than the socket buffers
// arrive whole and in order, through partial writes and waits for room;
// empty parts are skipped.
func TestRawIOWrite(t *testing.T) {
	cli, srv := tcppair.New(t)
	srv.SetWriteBuffer(16 << 10)
	cli.SetReadBuffer(16 << 10)
	r := newRawIO(srv)
	if r == nil {
		t.Fatal("no rawIO for a TCP connection")
	}
	head := []byte("HTTP/1.1 200 OK\r\n\r\n")
	body := make([]byte, 8<<20+123)
	for i := range body {
		body[i] = byte(i ^ i>>9 ^ i>>17)
	}
	want := append(append([]byte{}, head...), body...)
	want = append(want, "tail"...)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(cli)
		got <- b
	}()
	for _, w := range [][2][]byte{{nil, nil}, {head, body}, {nil, []byte("ta")}, {[]byte("il"), nil}} {
		if err := r.write(w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	srv.CloseWrite()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("client got %d bytes, want %d (equal prefix: %v)", len(b), len(want), bytes.HasPrefix(want, b))
	}
}

// TestRawIOWriteDeadline: a write to a client that does not read ends at
// the write deadline with the usual error.
func TestRawIOWriteDeadline(t *testing.T) {
	_, srv := tcppair.New(t)
	r := newRawIO(srv)
	srv.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	err := r.write([]byte("head"), make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a stalled client: %v, want a deadline error", err)
	}
}

// rawRead reads from r as conn.serve does: inside run, waiting in the
// netpoller whenever a read finds nothing.
func rawRead(r *rawIO, buf []byte) (n int, err error) {
	err = r.run(func() error {
		var rerr error
		n, rerr = r.Read(buf)
		return rerr
	})
	return n, err
}

// TestRawIORead: reads return what was sent, and say when they emptied
// the socket; nothing to read waits in the netpoller until bytes come;
// then io.EOF. The read deadline holds; a write to a closed peer fails.
func TestRawIORead(t *testing.T) {
	cli, srv := tcppair.New(t)
	r := newRawIO(srv)
	srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := rawRead(r, buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with nothing sent: %d, %v; want a deadline error", n, err)
	}
	srv.SetReadDeadline(time.Time{})
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	cli.Write([]byte("0123456789"))
	if n, err := rawRead(r, buf[:4]); err != nil || string(buf[:n]) != "0123" || r.drained {
		t.Fatalf("first 4 of 10 bytes: %q, %v, drained %v", buf[:n], err, r.drained)
	}
	if n, err := rawRead(r, buf); err != nil || string(buf[:n]) != "456789" || !r.drained {
		t.Fatalf("the other 6: %q, %v, drained %v", buf[:n], err, r.drained)
	}
	got := make(chan string)
	go func() {
		n, err := rawRead(r, buf)
		got <- fmt.Sprintf("%q %v", buf[:n], err)
	}()
	cli.Write([]byte("GET / HTTP/1.1\r\n"))
	if g := <-got; g != `"GET / HTTP/1.1\r\n" <nil>` {
		t.Fatalf("read that waited: %s", g)
	}
	cli.Close()
	if n, err := rawRead(r, buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v", n, err)
	}
	// The peer is gone: the first write may still be accepted by the
	// kernel, a later one fails.
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		werr = r.write([]byte("x"), make([]byte, 64<<10))
	}
	if werr == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
	srv.Close()
	if err := r.write([]byte("x"), nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := rawRead(r, buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
	}
}
