package httpapi

import (
	"net/http"
	"net/http/pprof"
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

// NewAdmin builds the admin handler: health, store statistics and pprof.
// Later the configuration API lives here too.
func NewAdmin(n AdminNode, stats func() StoreStats) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": n.Name()})
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": n.Name()})
	})
	mux.HandleFunc("GET /v1/store", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, stats())
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	return mux
}
