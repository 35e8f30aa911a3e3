package hubclient

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recordSleeps replaces the client's sleep with one that records delays
// and returns at once.
func recordSleeps(c *Client) func() []time.Duration {
	var mu sync.Mutex
	var delays []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), delays...)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name       string
		failN      int
		status     int
		retryAfter string
		maxRetries int
		wantErr    error // nil: success
		wantReqs   int
		wantDelays []time.Duration // exact delays; nil: any within the backoff cap
	}{
		{"500 twice then success", 2, 500, "", 4, nil, 3, nil},
		{"503 then success", 1, 503, "", 4, nil, 2, nil},
		{"429 honours Retry-After", 1, 429, "2", 4, nil, 2, []time.Duration{2 * time.Second}},
		{"Retry-After beyond the cap is not waited for", 1, 429, "60", 4, ErrRateLimited, 1, []time.Duration{}},
		{"503 until retries run out", 10, 503, "", 3, ErrUnreachable, 4, nil},
		{"no retry when MaxRetries is 0", 1, 500, "", 0, &Error{}, 1, []time.Duration{}},
		{"404 is not retried", 1, 404, "", 4, &Error{}, 1, []time.Duration{}},
	}
	for _, tt := range tests {
		for _, op := range []string{"HeadFile", "Do"} {
			t.Run(op+"/"+tt.name, func(t *testing.T) {
				f := newFakeHub(t)
				c := f.client(func(cfg *Config) {
					cfg.MaxRetries = tt.maxRetries
					cfg.RetryBase = 100 * time.Millisecond
					cfg.RetryMaxDelay = 10 * time.Second
				})
				delays := recordSleeps(c)
				f.setFlaky(tt.failN, tt.status, tt.retryAfter)

				var err error
				if op == "HeadFile" {
					_, err = c.HeadFile(ctxT(t), mustRepo(t, "org/flaky"), "main", "config.json", "")
				} else {
					resp, derr := c.Do(ctxT(t), "GET", "/api/models/org/flaky", "", nil, nil)
					if derr == nil {
						resp.Body.Close()
					}
					err = derr
				}
				var he *Error
				switch want := tt.wantErr.(type) {
				case nil:
					if err != nil {
						t.Fatalf("err = %v", err)
					}
				case *Error:
					if !errors.As(err, &he) || he.Status != tt.status {
						t.Fatalf("err = %v, want a %d *Error", err, tt.status)
					}
				default:
					if !errors.Is(err, want) {
						t.Fatalf("err = %v, want %v", err, want)
					}
				}
				if n := len(f.hubRequests()); n != tt.wantReqs {
					t.Errorf("%d requests, want %d", n, tt.wantReqs)
				}
				got := delays()
				if tt.wantDelays != nil {
					if len(got) != len(tt.wantDelays) {
						t.Fatalf("delays %v, want %v", got, tt.wantDelays)
					}
					for i := range got {
						if got[i] != tt.wantDelays[i] {
							t.Errorf("delays %v, want %v", got, tt.wantDelays)
						}
					}
				} else {
					if len(got) != tt.wantReqs-1 {
						t.Errorf("delays %v for %d requests", got, tt.wantReqs)
					}
					for i, d := range got {
						hi := 100 * time.Millisecond << i
						if d < hi/2 || d > hi {
							t.Errorf("delay %d = %v, want in [%v, %v]", i, d, hi/2, hi)
						}
					}
				}
			})
		}
	}
}

func TestNoRetryForPost(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	recordSleeps(c)
	f.setFlaky(1, 503, "")
	_, err := c.Do(ctxT(t), "POST", "/api/models/org/flaky", "", nil, []byte("x"))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.hubRequests()); n != 1 {
		t.Errorf("POST sent %d times", n)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	base := srv.URL
	srv.Close()
	c := newTestClient(t, base, func(cfg *Config) { cfg.MaxRetries = 2 })
	delays := recordSleeps(c)

	_, err := c.HeadFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", testToken)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("HeadFile: %v, want ErrUnreachable", err)
	}
	if n := len(delays()); n != 2 {
		t.Errorf("%d retries, want 2", n)
	}
	_, err = c.GetFile(ctxT(t), mustRepo(t, "org/model"), "main", "config.json", testToken, "", 0, -1)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("GetFile: %v, want ErrUnreachable", err)
	}
	if n := len(delays()); n != 2 {
		t.Errorf("GetFile retried (%d delays)", n)
	}
	_, err = c.Do(ctxT(t), "GET", "/api/models/org/model", "", nil, nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Do: %v, want ErrUnreachable", err)
	}
}

func TestCancelledContextIsNotUnreachable(t *testing.T) {
	f := newFakeHub(t)
	c := f.client()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.HeadFile(ctx, mustRepo(t, "org/model"), "main", "config.json", "")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want context.Canceled only", err)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", func(cfg *Config) {
		cfg.RetryBase = 200 * time.Millisecond
		cfg.RetryMaxDelay = time.Second
	})
	for attempt := range 100 {
		if d := c.backoff(attempt); d <= 0 || d > time.Second {
			t.Fatalf("backoff(%d) = %v", attempt, d)
		}
	}
}
