package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// newClient is a keep-alive HTTP client for conns concurrent connections
// that does not follow redirects unless follow is set.
func newClient(conns int, follow bool) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      256 << 10,
	}
	c := &http.Client{Transport: tr}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// fetch is one GET with its timings.
type fetch struct {
	start, firstByte, end time.Time
	bytes                 int64
	header                http.Header
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// get downloads url completely, noting the time of the first body byte.
func get(ctx context.Context, c *http.Client, url string) (fetch, error) {
	f := fetch{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return f, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return f, err
	}
	defer resp.Body.Close()
	f.header = resp.Header
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return f, fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if f.bytes == 0 {
				f.firstByte = time.Now()
			}
			f.bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return f, err
		}
	}
	f.end = time.Now()
	if cl := resp.ContentLength; cl >= 0 && cl != f.bytes {
		return f, fmt.Errorf("GET %s: %d of %d bytes", url, f.bytes, cl)
	}
	return f, nil
}

// parallelOnce runs n clients that each GET urls[i%len(urls)] once, all
// released together.
func parallelOnce(c *http.Client, urls []string, n int) ([]fetch, time.Duration, error) {
	out := make([]fetch, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out[i], errs[i] = get(context.Background(), c, urls[i%len(urls)])
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	el := time.Since(start)
	for _, e := range errs {
		if e != nil {
			return out, el, e
		}
	}
	return out, el, nil
}

// loadResult is what a fixed-duration load run saw.
type loadResult struct {
	requests int64
	bytes    int64
	elapsed  time.Duration
	lat      []time.Duration
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.lat)-1))
	return r.lat[i]
}

// loadFor runs conns keep-alive clients that GET url back to back for d.
func loadFor(c *http.Client, url string, conns int, d time.Duration) (loadResult, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type part struct {
		n, bytes int64
		lat      []time.Duration
		err      error
	}
	parts := make([]part, conns)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	var deadline time.Time
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[i]
			p.lat = make([]time.Duration, 0, 4096)
			<-gate
			for time.Now().Before(deadline) {
				f, err := get(ctx, c, url)
				if err != nil {
					p.err = err
					return
				}
				p.n++
				p.bytes += f.bytes
				p.lat = append(p.lat, f.end.Sub(f.start))
			}
		}()
	}
	start := time.Now()
	deadline = start.Add(d)
	close(gate)
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	for _, p := range parts {
		if p.err != nil {
			return res, p.err
		}
		res.requests += p.n
		res.bytes += p.bytes
		res.lat = append(res.lat, p.lat...)
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res, nil
}
