package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestRawLoadCounts(t *testing.T) {
	const size = 4096
	body := make([]byte, size)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/a/b.bin" || r.Header.Get("User-Agent") != "hfcache-bench" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		served.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	}))
	defer srv.Close()

	for _, n := range []int{1, 4} {
		served.Store(0)
		res, cpu, err := rawLoadFor(srv.URL+"/a/b.bin", n, 100*time.Millisecond, size)
		if err != nil {
			t.Fatalf("%d conns: %v", n, err)
		}
		if res.requests == 0 || res.requests != served.Load() {
			t.Errorf("%d conns: %d requests counted, %d served", n, res.requests, served.Load())
		}
		if res.bytes != res.requests*size {
			t.Errorf("%d conns: %d bytes for %d requests", n, res.bytes, res.requests)
		}
		if int64(len(res.lat)) != res.requests || !slices.IsSorted(res.lat) || res.lat[0] <= 0 {
			t.Errorf("%d conns: %d latencies for %d requests, sorted %v", n, len(res.lat), res.requests, slices.IsSorted(res.lat))
		}
		if res.elapsed < 100*time.Millisecond || cpu <= 0 {
			t.Errorf("%d conns: elapsed %v, cpu %v", n, res.elapsed, cpu)
		}
	}
}

func TestRawLoadErrors(t *testing.T) {
	const size = 4096
	body := make([]byte, size)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.WriteHeader(http.StatusNotFound)
			w.Write(body)
		}, `"HTTP/1.1 404 Not Found", want 200`},
		{"length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write(body[:100])
		}, "Content-Length 100"},
		{"no length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "keep-alive")
			w.(http.Flusher).Flush()
			w.Write(body)
		}, "Transfer-Encoding: chunked"},
		{"connection close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(body)
		}, "Connection: close"},
		{"short body", func(w http.ResponseWriter, r *http.Request) {
			c, bw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
			bw.Write(body[:1000])
			bw.Flush()
		}, "short body: 1000 of 4096 bytes"},
		{"closed", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}, "the server closed the connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			res, _, err := rawLoadFor(srv.URL+"/x", 2, 5*time.Second, size)
			if err == nil {
				t.Fatalf("no error (%d requests)", res.requests)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			t.Log(err)
			// A failing connection stops the run at once, not after 5 s.
			if res.elapsed > 4*time.Second {
				t.Errorf("the run went on for %v after the error", res.elapsed)
			}
		})
	}
}

// A body longer than the read buffer is read in several reads into the
// same buffer; a short one still names the status line, not body bytes.
func TestRawLoadShortLongBody(t *testing.T) {
	const size = 200 << 10
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
		bw.Write(make([]byte, 150<<10))
		bw.Flush()
	}))
	defer srv.Close()
	_, _, err := rawLoadFor(srv.URL+"/x", 1, 5*time.Second, size)
	want := `short body: 153600 of 204800 bytes (status line "HTTP/1.1 200 OK")`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want it to contain %s", err, want)
	}
}

func TestRawLoadDialError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, _, err := rawLoadFor(url+"/x", 2, time.Second, 10)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v from a closed port, want connection refused", err)
	}
}

// A connect that gets no answer ends at its timeout, however many signals
// reach the process meanwhile. The bench process's children exit and the
// Go runtime preempts its threads with signals; a blocking connect with a
// timeout is not restarted after one, and failed a full run with EINTR.
func TestDialRawTimeoutUnderSignals(t *testing.T) {
	// A listener with a backlog of one that never accepts: once its queue
	// is full, the kernel drops further SYNs and a connect waits.
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(lfd)
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}
	for range 8 { // fill the queue
		fd, err := dialRaw(a, 100*time.Millisecond)
		if err != nil {
			break
		}
		defer syscall.Close(fd)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				syscall.Kill(os.Getpid(), syscall.SIGURG) // the runtime's own preemption signal
				runtime.Gosched()
			}
		}
	}()
	start := time.Now()
	fd, err := dialRaw(a, 300*time.Millisecond)
	close(stop)
	<-done
	if err == nil {
		syscall.Close(fd)
		t.Fatal("connected to a listener whose queue is full")
	}
	if !strings.Contains(err.Error(), "no answer in 300ms") || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("after %v: %v, want no answer in 300ms", time.Since(start), err)
	}
}
