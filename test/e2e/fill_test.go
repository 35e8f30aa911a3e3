package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestConcurrentColdFill: 32 concurrent GETs of one cold 64 MiB file through
// the hfcache binary make exactly one upstream fill (each byte leaves the Hub
// once, over the fill's parallel ranged requests), every response is
// byte-identical to the Hub's, and every client gets its first bytes before
// the fill ends.
func TestConcurrentColdFill(t *testing.T) {
	hub := startHub(t)
	want := content(t, hub, hf.Model, bigID, "main", "big.bin")
	wantSHA := sha(want)
	p := startProc(t, hub.URL(), t.TempDir())
	u := resolveURL(p.URL, hf.Model, bigID, "main", "big.bin")
	// Resolve metadata first so the throttle only slows the body.
	if m := pythonHead(t, u, ""); m.Status != 200 {
		t.Fatalf("HEAD: %+v", m)
	}
	hub.SetThrottle(16<<20, 0) // the fill takes about 4 s

	const clients = 32
	var (
		firsts sync.WaitGroup
		all    sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		sums   = make([]string, clients)
	)
	firsts.Add(clients)
	all.Add(clients)
	for i := 0; i < clients; i++ {
		go func(i int) {
			defer all.Done()
			first := false
			defer func() {
				if !first {
					firsts.Done()
				}
			}()
			resp, err := http.Get(u)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			buf := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, buf); err == nil {
				h.Write(buf)
				first = true
				firsts.Done()
			}
			_, err = io.Copy(h, resp.Body)
			if err != nil || resp.StatusCode != 200 {
				mu.Lock()
				errs = append(errs, fmt.Errorf("client %d: status %d: %v", i, resp.StatusCode, err))
				mu.Unlock()
			}
			sums[i] = hex.EncodeToString(h.Sum(nil))
		}(i)
	}
	waitGroup(t, &firsts, 60*time.Second, "first bytes at every client")
	if sent := hub.Stats().BodyBytes(wantSHA); sent >= bigSize {
		t.Errorf("the fill had already ended (%d bytes sent) when the last client got its first byte", sent)
	}
	waitGroup(t, &all, 120*time.Second, "every client's download")
	hub.SetThrottle(0, 0)
	for _, err := range errs {
		t.Error(err)
	}
	for i, s := range sums {
		if s != wantSHA {
			t.Fatalf("client %d got different bytes", i)
		}
	}
	// One fill for all 32 clients: every byte left the Hub exactly once
	// (the fill uses several ranged requests for a blob this large).
	st := hub.Stats()
	if sent := st.BodyBytes(wantSHA); sent != bigSize {
		t.Fatalf("the Hub sent %d body bytes for a %d-byte file (%d requests), want each byte once", sent, bigSize, st.BodyFetches(wantSHA))
	}
	t.Logf("one fill: %d ranged upstream requests, %d bytes", st.BodyFetches(wantSHA), st.BodyBytes(wantSHA))
}

// TestRangeResume: a client resuming from the middle gets the exact bytes,
// during a fill (waiting on it, not fetching again) and on a hit.
func TestRangeResume(t *testing.T) {
	hub := startHub(t)
	want := content(t, hub, hf.Model, bigID, "main", "big.bin")
	p := startProc(t, hub.URL(), t.TempDir())
	u := resolveURL(p.URL, hf.Model, bigID, "main", "big.bin")
	if m := pythonHead(t, u, ""); m.Status != 200 {
		t.Fatalf("HEAD: %+v", m)
	}
	hub.SetThrottle(32<<20, 0)
	// A full download starts the fill; a resume from the middle joins it.
	full := make(chan []byte, 1)
	go func() {
		resp, err := http.Get(u)
		if err != nil {
			full <- nil
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		full <- body
	}()
	eventually(t, 30*time.Second, "the fill to start", func() bool { return hub.Stats().BodyBytes(sha(want)) > 0 })
	mid := int64(bigSize/2 + 12345)
	for round, label := range []string{"during fill", "on hit"} {
		resp, body := do(t, http.MethodGet, u, map[string]string{"Range": fmt.Sprintf("bytes=%d-", mid)})
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", mid, bigSize-1, bigSize) {
			t.Fatalf("%s: status %d Content-Range %q", label, resp.StatusCode, resp.Header.Get("Content-Range"))
		}
		if sha(body) != sha(want[mid:]) {
			t.Fatalf("%s: resumed bytes differ", label)
		}
		if round == 0 {
			if got := <-full; sha(got) != sha(want) {
				t.Fatal("full download differs")
			}
			hub.SetThrottle(0, 0)
			if src := resp.Header.Get("X-Hfcache-Source"); src != "upstream" {
				t.Errorf("during fill: source %q", src)
			}
		} else if src := resp.Header.Get("X-Hfcache-Source"); src != "disk" {
			t.Errorf("on hit: source %q", src)
		}
		mid = bigSize / 3
	}
	if sent := hub.Stats().BodyBytes(sha(want)); sent != bigSize {
		t.Fatalf("the Hub sent %d body bytes for a %d-byte file, want each byte once", sent, bigSize)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}
