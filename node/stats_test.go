package node

import (
	"fmt"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestActivityBounded(t *testing.T) {
	model := func(id string) hf.Repo { return hf.Repo{Type: hf.Model, ID: id} }
	a := newActivity()
	a.limitR = 3
	a.served(model("a"), 300, true)
	a.served(model("b"), 200, false)
	a.served(model("c"), 100, false)
	a.served(model("a"), 50, false)
	a.served(model("d"), 10, true) // evicts c, the least served
	top := a.top(10)
	if len(top) != 3 || top[0].Repo != "model/a" || top[0].Bytes != 350 || top[0].Requests != 2 || top[0].Hits != 1 ||
		top[1].Repo != "model/b" || top[2].Repo != "model/d" {
		t.Fatalf("top = %+v", top)
	}
	if got := a.top(1); len(got) != 1 || got[0].Repo != "model/a" {
		t.Fatalf("top(1) = %+v", got)
	}
}

func TestRecentErrorsRing(t *testing.T) {
	a := newActivity()
	if len(a.recent()) != 0 {
		t.Fatal("errors before any")
	}
	for i := 0; i < maxRecentErrors+7; i++ {
		a.failed(RecentError{Detail: fmt.Sprint(i)})
	}
	got := a.recent()
	if len(got) != maxRecentErrors || got[0].Detail != fmt.Sprint(maxRecentErrors+6) || got[len(got)-1].Detail != "7" {
		t.Fatalf("recent: %d, newest %q, oldest %q", len(got), got[0].Detail, got[len(got)-1].Detail)
	}
}
