package httpapi

import (
	"net/http/httptest"
	"testing"
)

func TestClientLimiter(t *testing.T) {
	l := newClientLimiter(2)
	a := httptest.NewRequest("GET", "/", nil)
	a.RemoteAddr = "10.0.0.1:1234"
	b := httptest.NewRequest("GET", "/", nil)
	b.RemoteAddr = "10.0.0.2:999"
	r1, ok1 := l.acquire(a)
	r2, ok2 := l.acquire(a)
	_, ok3 := l.acquire(a)
	rb, okb := l.acquire(b)
	if !ok1 || !ok2 || ok3 || !okb {
		t.Fatalf("acquire: %v %v %v %v, want the third from one address refused", ok1, ok2, ok3, okb)
	}
	r1()
	if r, ok := l.acquire(a); !ok {
		t.Fatal("a released slot was not reusable")
	} else {
		r()
	}
	r2()
	rb()
	if len(l.active) != 0 {
		t.Fatalf("leaked slots: %v", l.active)
	}
	if r, ok := (*clientLimiter)(nil).acquire(a); !ok {
		t.Fatal("a nil limiter must allow")
	} else {
		r()
	}
}
