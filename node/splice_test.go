package node

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/hfcache/hfcache/test/tcppair"
)

// TestSpliceBodyLowWaterMark relays a body through spliceBody.WriteTo from
// an owner that sends its last 1000 bytes late and then keeps the
// connection open: with the low-water mark on, the relay must still finish
// (the last bytes are read without it), pass every byte in order, and
// leave the mark at 1. A body that ends early is an error.
func TestSpliceBodyLowWaterMark(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		lowat int
	}{
		{"marked", 3*relayLowat + 12345, relayLowat},
		{"too small for the mark", 2 * relayLowat, relayLowat},
		{"no mark", relayLowat + 7, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owner, relayIn := tcppair.New(t)
			relayOut, client := tcppair.New(t)
			body := make([]byte, tc.size)
			for i := range body {
				body[i] = byte(i ^ i>>8 ^ i>>16)
			}
			// All but the last 1000 bytes; the rest once the client has
			// those, so the relay waits for a tail smaller than the mark.
			// The owner then stays open, as a keep-alive peer would.
			head := int(tc.size) - 1000
			go owner.Write(body[:head])
			relayIn.SetDeadline(time.Now().Add(10 * time.Second))
			b := &spliceBody{br: bufio.NewReaderSize(relayIn, 64<<10), conn: relayIn, left: tc.size, lowat: tc.lowat, stop: func() bool { return true }}
			got := make(chan []byte)
			go func() {
				buf := make([]byte, tc.size)
				n, _ := io.ReadFull(client, buf[:head])
				if n == head {
					owner.Write(body[head:])
					m, _ := io.ReadFull(client, buf[head:])
					n += m
				}
				got <- buf[:n]
			}()
			n, err := b.WriteTo(relayOut)
			if err != nil || n != tc.size {
				t.Fatalf("WriteTo: %d of %d bytes, %v", n, tc.size, err)
			}
			if g := <-got; !bytes.Equal(g, body) {
				t.Fatalf("client got %d bytes, want %d (equal prefix: %v)", len(g), len(body), bytes.HasPrefix(body, g))
			}
			rc, _ := relayIn.SyscallConn()
			var mark int
			rc.Control(func(fd uintptr) { mark, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) })
			if mark > 1 { // the default reads as 0 or 1
				t.Fatalf("SO_RCVLOWAT left at %d", mark)
			}
		})
	}
	t.Run("short body", func(t *testing.T) {
		owner, relayIn := tcppair.New(t)
		relayOut, client := tcppair.New(t)
		go io.Copy(io.Discard, client)
		go func() {
			owner.Write(make([]byte, relayLowat+100))
			owner.Close()
		}()
		relayIn.SetDeadline(time.Now().Add(10 * time.Second))
		b := &spliceBody{br: bufio.NewReader(relayIn), conn: relayIn, left: 4 * relayLowat, lowat: relayLowat, stop: func() bool { return true }}
		if n, err := b.WriteTo(relayOut); !errors.Is(err, io.ErrUnexpectedEOF) || n != relayLowat+100 {
			t.Fatalf("WriteTo of a short body: %d bytes, %v; want %d and io.ErrUnexpectedEOF", n, err, relayLowat+100)
		}
	})
}
