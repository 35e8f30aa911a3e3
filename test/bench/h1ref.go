package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hfcache/hfcache/httpapi/h1"
	"github.com/hfcache/hfcache/test/procs"
)

// P2's reference server: hfcache's own HTTP/1.1 layer (h1) with a handler
// that does no cache work at all. It fetches one response from the hfcache
// node once, then answers every request with the same header fields and
// body. Its requests/s bound what any hit path behind h1 can reach on this
// machine while sending the Hub's headers: the difference from hfcache's
// row is what the hit path costs, the difference from nginx's is what h1
// and the header block cost (see docs/PERFORMANCE.md, P2).
//
// It runs as a child process (this program again, with refEnv set), so
// that it has a Go runtime of its own, as hfcache does, and does not share
// the load generator's.

// refEnv, when set in the environment, makes this program (or the test
// binary, see TestMain) serve the reference instead: its value is the URL
// whose response to replay.
const refEnv = "HFCACHE_BENCH_H1REF_FROM"

// refReady is the line the reference prints, followed by its URL, when it
// accepts connections.
const refReady = "h1ref: "

// serveRefFromEnv serves the reference if refEnv is set and never returns
// then; otherwise it returns at once.
func serveRefFromEnv() {
	from := os.Getenv(refEnv)
	if from == "" {
		return
	}
	if err := serveRef(from); err != nil {
		fmt.Fprintln(os.Stderr, "h1ref:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveRef(from string) error {
	resp, err := http.Get(from)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", from, resp.Status)
	}
	hdr := resp.Header.Clone()
	hdr.Del("Date") // h1 writes its own, as for hfcache
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The map is rebuilt per request, as a handler does; the value
		// slices are shared.
		wh := w.Header()
		for k, v := range hdr {
			wh[k] = v
		}
		w.Write(body)
	})
	l := h1.NewListener(ln, h, h1.Config{})
	fmt.Println(refReady + "http://" + ln.Addr().String())
	err = http.Serve(l, h)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// refProc is a running reference server.
type refProc struct {
	*procs.Proc
	URL string
}

// startRef starts the reference server replaying from.
func startRef(from string) (*refProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), refEnv+"="+from)
	p, err := startProc("h1ref", cmd, nil, func(line string) bool { return strings.HasPrefix(line, refReady) })
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	line, err := p.WaitReady(ctx)
	if err != nil {
		p.Stop(os.Interrupt, stopTimeout)
		return nil, fmt.Errorf("not ready: %w: %s", err, p.Log.Lines())
	}
	url := strings.TrimPrefix(line, refReady)
	return &refProc{Proc: p, URL: url}, nil
}
