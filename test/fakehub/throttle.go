package fakehub

import (
	"context"
	"net/http"
	"time"
)

// throttledWriter caps a response body's rate by writing in slices and
// sleeping until each slice is due.
type throttledWriter struct {
	http.ResponseWriter
	rate    int64 // bytes per second
	ctx     context.Context
	start   time.Time
	written int64
}

func (tw *throttledWriter) Write(p []byte) (int, error) {
	chunk := int(tw.rate / 20)
	if chunk < 1 {
		chunk = 1
	}
	n := 0
	for n < len(p) {
		end := min(n+chunk, len(p))
		m, err := tw.ResponseWriter.Write(p[n:end])
		n += m
		tw.written += int64(m)
		if err != nil {
			return n, err
		}
		if f, ok := tw.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		due := tw.start.Add(time.Duration(float64(tw.written) / float64(tw.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-tw.ctx.Done():
				t.Stop()
				return n, tw.ctx.Err()
			}
		}
	}
	return n, nil
}

func (tw *throttledWriter) Flush() {
	if f, ok := tw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (tw *throttledWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }
