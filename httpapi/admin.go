package httpapi

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
	"github.com/prometheus/client_golang/prometheus"
)

// StoreStats is what the admin API shows of the local store.
type StoreStats struct {
	Used   int64 `json:"used_bytes"`
	Budget int64 `json:"budget_bytes"`
	Blobs  int   `json:"blobs"`
	// Xorbs and XorbBytes are the Xet xorbs of which chunks are held, and
	// those chunks' bytes (part of Used).
	Xorbs     int   `json:"xorbs"`
	XorbBytes int64 `json:"xorb_bytes"`
}

// AdminNode is what the admin handler needs from a node.
type AdminNode interface {
	Name() string
}

// ConfigStore is what the admin API needs from the replicated configuration.
type ConfigStore interface {
	Apply(ctx context.Context, cmd raftstore.Command) (uint64, error)
	Snapshot() raftstore.Snapshot
	WaitIndex(ctx context.Context, index uint64) error
	Status() raftstore.Status
	TransferLeadership() error
}

// AdminDeps are the admin handler's sources.
type AdminDeps struct {
	Node    AdminNode
	Store   func() StoreStats
	Members func() []membership.Member
	// Config is the replicated configuration; nil serves no /v1 objects.
	Config ConfigStore
	// Token, when set, is required (Bearer) on every route but health.
	Token string
	// Hold is how long a write waits for a leader before answering 503.
	Hold time.Duration
	// Ready reports whether the node is ready to serve (nil: always).
	Ready func() error
	// Sealer encrypts remote tokens before they enter the Raft log.
	Sealer *raftstore.Sealer
	// ForwardTLS is the TLS client configuration for forwarding writes to
	// a leader's https admin URL.
	ForwardTLS *tls.Config
	// Metrics is the node's own registry, served at /metrics (nil: no route).
	Metrics prometheus.Gatherer
	// Jobs runs prefetch jobs (/v1/jobs); nil serves none.
	Jobs JobRunner
	// Status feeds the status page at / (fills, repositories served,
	// recent errors, ring shares); nil serves no page. Like every route
	// but health, the page needs the token when one is set.
	Status StatusSource
}

// memberView is one member in GET /v1/cluster/members.
type memberView struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Self       bool   `json:"self,omitempty"`
	Suffrage   string `json:"suffrage,omitempty"`
	Leader     bool   `json:"leader"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr,omitempty"`
	ClientURL  string `json:"client_url"`
	AdminURL   string `json:"admin_url"`
	Version    string `json:"version,omitempty"`
}

// admin serves the admin API.
type admin struct {
	d   AdminDeps
	fwd *http.Client
}

// NewAdmin builds the admin handler: health, the configuration API (writes
// go through the Raft leader), the cluster's state, store statistics and
// pprof.
func NewAdmin(d AdminDeps) http.Handler {
	if d.Hold <= 0 {
		d.Hold = 5 * time.Second
	}
	a := &admin{d: d, fwd: &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: d.ForwardTLS},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": d.Node.Name()})
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		serveReady(w, d.Node.Name(), d.Ready)
	})
	mux.HandleFunc("GET /v1/store", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Store())
	})
	mux.HandleFunc("GET /v1/cluster/members", a.members)
	if d.Jobs != nil {
		mux.HandleFunc("POST /v1/jobs", a.startJob)
		mux.HandleFunc("GET /v1/jobs", a.listJobs)
		mux.HandleFunc("GET /v1/jobs/{id}", a.getJob)
		mux.HandleFunc("DELETE /v1/jobs/{id}", a.cancelJob)
	}
	if d.Config != nil {
		mux.HandleFunc("GET /v1/cluster/raft", a.raftStatus)
		mux.HandleFunc("POST /v1/cluster/transfer-leadership", a.transferLeadership)
		mux.HandleFunc("GET /v1/{kind}", a.list)
		mux.HandleFunc("GET /v1/{kind}/{name}", a.get)
		mux.HandleFunc("PUT /v1/{kind}/{name}", a.put)
		mux.HandleFunc("DELETE /v1/{kind}/{name}", a.delete)
	}
	if d.Metrics != nil {
		mux.Handle("GET /metrics", metricsHandler(d.Metrics))
	}
	if d.Status != nil {
		mux.HandleFunc("GET /{$}", a.status)
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	return a.auth(mux)
}

// auth requires the admin token on everything but health.
func (a *admin) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerNode, a.d.Node.Name())
		if a.d.Token != "" && r.URL.Path != "/-/health" && r.URL.Path != "/-/ready" {
			got := bearer(r)
			if subtle.ConstantTimeCompare([]byte(got), []byte(a.d.Token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hfcache admin"`)
				writeAdminError(w, errUnauthorized)
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		next.ServeHTTP(w, r)
	})
}

func (a *admin) members(w http.ResponseWriter, r *http.Request) {
	servers := map[string]raftstore.Server{}
	if a.d.Config != nil {
		for _, s := range a.d.Config.Status().Servers {
			servers[s.ID] = s
		}
	}
	out := []memberView{}
	for _, m := range a.d.Members() {
		s := servers[m.Name]
		out = append(out, memberView{Name: m.Name, State: string(m.State), Self: m.Self, Suffrage: s.Suffrage, Leader: s.Leader,
			GossipAddr: m.Addr, RaftAddr: m.Meta.RaftAddr, ClientURL: m.Meta.ClientURL, AdminURL: m.Meta.AdminURL, Version: m.Meta.Version})
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": a.d.Node.Name(), "members": out})
}

// raftView is GET /v1/cluster/raft.
type raftView struct {
	State        string       `json:"state"`
	Term         uint64       `json:"term"`
	LastIndex    uint64       `json:"last_index"`
	AppliedIndex uint64       `json:"applied_index"`
	CommitIndex  uint64       `json:"commit_index"`
	LeaderID     string       `json:"leader_id"`
	LeaderAddr   string       `json:"leader_addr"`
	Servers      []serverView `json:"servers"`
}

type serverView struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

func (a *admin) raftStatus(w http.ResponseWriter, r *http.Request) {
	st := a.d.Config.Status()
	v := raftView{State: st.State, Term: st.Term, LastIndex: st.LastIndex, AppliedIndex: st.AppliedIndex,
		CommitIndex: st.CommitIndex, LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr, Servers: []serverView{}}
	for _, s := range st.Servers {
		v.Servers = append(v.Servers, serverView{ID: s.ID, Address: s.Address, Suffrage: s.Suffrage, Leader: s.Leader})
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *admin) transferLeadership(w http.ResponseWriter, r *http.Request) {
	if a.forwardIfFollower(w, r, nil) {
		return
	}
	if err := a.d.Config.TransferLeadership(); err != nil {
		writeAdminError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.d.Hold)
	defer cancel()
	for ctx.Err() == nil {
		if st := a.d.Config.Status(); st.LeaderID != "" && st.LeaderID != a.d.Node.Name() {
			writeJSON(w, http.StatusOK, map[string]string{"leader": st.LeaderID})
			return
		}
		pause(ctx, 20*time.Millisecond)
	}
	writeAdminError(w, raftstore.ErrNoLeader)
}

// forwardIfFollower sends a leader-only request to the leader; it reports
// whether it answered.
func (a *admin) forwardIfFollower(w http.ResponseWriter, r *http.Request, body []byte) bool {
	st := a.d.Config.Status()
	// A node must never forward to itself, nor pass on a request it was
	// forwarded: the request would loop until it runs out of descriptors.
	if st.IsLeader() || st.LeaderID == a.d.Node.Name() {
		return false
	}
	if st.LeaderID == "" || r.Header.Get(headerForwarded) != "" {
		return false // the caller's attempt will answer: no leader, or not the leader
	}
	a.forward(w, r, st.LeaderID, body)
	return true
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// writeAdminJSON answers with an object and the index it reflects.
func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// kindOf validates the {kind} path segment.
func kindOf(r *http.Request) (string, bool) {
	switch k := r.PathValue("kind"); k {
	case "remotes", "repositories", "distributions":
		return k, true
	}
	return "", false
}

// trimETag reads an If-Match version: `3` or `"3"`.
func trimETag(s string) string { return strings.Trim(strings.TrimSpace(s), `"`) }
