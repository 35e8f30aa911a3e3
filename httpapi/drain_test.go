package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// nameOnly is a Node of which only the name is used (health, readiness,
// refused requests).
type nameOnly struct{ Node }

func (nameOnly) Name() string { return "n1" }

func TestClientReadyAndDrain(t *testing.T) {
	var notReady error
	c := NewClient(Config{Ready: func() error { return notReady }}, nameOnly{})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/-/ready"); rec.Code != 200 {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
	notReady = errors.New("draining")
	if rec := get("/-/ready"); rec.Code != 503 {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/-/health"); rec.Code != 200 {
		t.Fatalf("health while not ready: %d", rec.Code)
	}

	// A request admitted before the drain is waited for.
	if !c.admitClient(httptest.NewRecorder()) {
		t.Fatal("refused before the drain")
	}
	c.Drain()
	rec := get("/api/models/acme/m/revision/main")
	h := rec.Header()
	if rec.Code != http.StatusServiceUnavailable || h.Get("Connection") != "close" || h.Get(hf.HeaderErrorCode) != "ServiceUnavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("while draining: %d %v", rec.Code, h)
	}
	if rec := get("/-/health"); rec.Code != 200 {
		t.Fatalf("health while draining: %d", rec.Code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) || c.InFlight() != 1 {
		t.Fatalf("WaitIdle with a request in flight: %v, %d in flight", err, c.InFlight())
	}
	c.admitted()
	if err := c.WaitIdle(context.Background()); err != nil || c.InFlight() != 0 {
		t.Fatalf("WaitIdle after the request: %v, %d in flight", err, c.InFlight())
	}
}
