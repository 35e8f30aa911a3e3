package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
)

// transferConfig is a leader whose TransferLeadership hands over to n2.
type transferConfig struct {
	*fakeConfig
	transfers int
}

func (c *transferConfig) Status() raftstore.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *transferConfig) TransferLeadership() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transfers++
	c.status = raftstore.Status{State: "follower", LeaderID: "n2"}
	return nil
}

// POST /v1/cluster/transfer-leadership on the leader transfers leadership
// there, with the state spelled as raftstore spells it ("leader"), instead
// of forwarding the request to itself.
func TestAdminTransferLeadershipOnTheLeader(t *testing.T) {
	cfg := &transferConfig{fakeConfig: &fakeConfig{status: raftstore.Status{State: "leader", LeaderID: "n1"}}}
	// No members: a node that would forward finds no admin URL for "n1" and
	// answers 503 at once (with its own URL listed it would loop).
	srv := httptest.NewServer(NewAdmin(AdminDeps{
		Node:    namedNode("n1"),
		Store:   func() StoreStats { return StoreStats{} },
		Members: func() []membership.Member { return nil },
		Config:  cfg,
		Hold:    time.Second,
	}))
	t.Cleanup(srv.Close)
	resp, _, raw := adminDo(t, http.MethodPost, srv.URL+"/v1/cluster/transfer-leadership", "", "", nil)
	cfg.mu.Lock()
	transfers := cfg.transfers
	cfg.mu.Unlock()
	if resp.StatusCode != 200 || !strings.Contains(raw, `"n2"`) || transfers != 1 {
		t.Fatalf("transfer on the leader: %d %s, %d transfers", resp.StatusCode, raw, transfers)
	}
}
