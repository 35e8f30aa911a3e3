package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// spliceThreshold is the size from which a blob proxied from its owner is
// read over a dedicated connection whose body can be spliced socket to
// socket (no copy through user space), instead of a pooled HTTP client
// connection.
const spliceThreshold = 1 << 20

// relayLowat is the receive low-water mark (SO_RCVLOWAT) on the owner's
// socket while a blob the owner sends from its disk is relayed. The relay
// splices whatever the socket holds each time it turns readable; from a
// sendfile on loopback that is a segment at a time, so the relay woke and
// made two splices per ~64 KiB. With the mark the kernel wakes it once
// this much is queued: fewer wake-ups and larger splices for the same
// bytes (see docs/PERFORMANCE.md, P5). A blob the owner is still filling
// arrives at the Hub's pace and is relayed as it comes, without the mark.
const relayLowat = 1 << 20

// blobDirect asks a peer for a blob over a fresh TCP connection and returns
// a response whose body moves bytes with splice(2) when copied into an
// http.ResponseWriter: the kernel forwards them from the owner's socket to
// the client's.
func (p *peerClient) blobDirect(ctx context.Context, peer Peer, f *File, hdr http.Header) (*http.Response, error) {
	req, err := p.blobRequest(ctx, peer, f, hdr, false)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(peer.ClientURL)
	if u == nil || u.Scheme != "http" {
		// TLS between nodes: no splicing through encryption.
		return p.blob(ctx, peer, f, hdr, false)
	}
	conn, err := peerDialer().DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	req.Close = true
	if err := req.Write(conn); err != nil {
		stop()
		conn.Close()
		return nil, fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		stop()
		conn.Close()
		return nil, fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	te := strings.Join(resp.TransferEncoding, ",")
	if resp.ContentLength < 0 || te != "" {
		// Not a plain length-delimited body: read it as net/http parsed it.
		body := resp.Body
		resp.Body = closeFuncs{body, func() { stop(); conn.Close() }}
		return resp, nil
	}
	body := &spliceBody{br: br, conn: conn, left: resp.ContentLength, stop: stop}
	if resp.Header.Get(HeaderSource) == SourceDisk {
		body.lowat = relayLowat
	}
	resp.Body = body
	return resp, nil
}

// spliceBody is a length-delimited response body read from a raw
// connection. WriteTo first flushes what the header parser buffered, then
// hands the socket to the destination's ReadFrom, which splices.
type spliceBody struct {
	br    *bufio.Reader
	conn  net.Conn
	left  int64
	lowat int // the receive low-water mark for all but the last lowat bytes; 0: none
	stop  func() bool
}

func (b *spliceBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *spliceBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if n := min(int64(b.br.Buffered()), b.left); n > 0 {
		buf, _ := b.br.Peek(int(n))
		m, err := w.Write(buf)
		b.br.Discard(m)
		total += int64(m)
		b.left -= int64(m)
		if err != nil {
			return total, err
		}
	}
	copyN := func(n int64) error {
		m, err := io.Copy(w, &io.LimitedReader{R: b.conn, N: n})
		total += m
		b.left -= m
		if err == nil && m < n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if b.lowat > 0 && b.left > 2*int64(b.lowat) {
		// The mark holds until the last lowat bytes: up to then at least
		// that many are still to come, so every wait ends. The last ones
		// are read with the default mark and need no end of stream.
		if setRcvLowat(b.conn, b.lowat) {
			err := copyN(b.left - int64(b.lowat))
			setRcvLowat(b.conn, 1)
			if err != nil {
				return total, err
			}
		}
	}
	return total, copyN(b.left)
}

// setRcvLowat sets c's SO_RCVLOWAT; false if it could not.
func setRcvLowat(c net.Conn, n int) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil {
		return false
	}
	return serr == nil
}

func (b *spliceBody) Close() error {
	b.stop()
	return b.conn.Close()
}

type closeFuncs struct {
	io.ReadCloser
	after func()
}

func (c closeFuncs) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}
