package httpapi

import (
	"net/http"
	"net/http/pprof"

	"github.com/hfcache/hfcache/node/membership"
)

// StoreStats is what the admin API shows of the local store.
type StoreStats struct {
	Used   int64 `json:"used_bytes"`
	Budget int64 `json:"budget_bytes"`
	Blobs  int   `json:"blobs"`
}

// AdminNode is what the admin handler needs from a node.
type AdminNode interface {
	Name() string
}

// AdminDeps are the admin handler's sources.
type AdminDeps struct {
	Node    AdminNode
	Store   func() StoreStats
	Members func() []membership.Member
}

// memberView is one member in GET /v1/cluster/members.
type memberView struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Self       bool   `json:"self,omitempty"`
	GossipAddr string `json:"gossip_addr"`
	ClientURL  string `json:"client_url"`
	AdminURL   string `json:"admin_url"`
	Version    string `json:"version,omitempty"`
}

// NewAdmin builds the admin handler: health, store statistics, this node's
// view of the cluster, and pprof.
func NewAdmin(d AdminDeps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": d.Node.Name()})
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": d.Node.Name()})
	})
	mux.HandleFunc("GET /v1/store", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Store())
	})
	mux.HandleFunc("GET /v1/cluster/members", func(w http.ResponseWriter, r *http.Request) {
		out := []memberView{}
		for _, m := range d.Members() {
			out = append(out, memberView{Name: m.Name, State: string(m.State), Self: m.Self, GossipAddr: m.Addr,
				ClientURL: m.Meta.ClientURL, AdminURL: m.Meta.AdminURL, Version: m.Meta.Version})
		}
		writeJSON(w, http.StatusOK, map[string]any{"node": d.Node.Name(), "members": out})
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	return mux
}
