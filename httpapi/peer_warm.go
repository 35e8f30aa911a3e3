package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/hfcache/hfcache/node"
)

// PeerWarmer is what the peer warm route needs from a node: filling one
// file of a prefetch job as the blob's owner.
type PeerWarmer interface {
	WarmLocal(ctx context.Context, req node.PeerWarmRequest, progress func(written int64)) (node.WarmResult, error)
}

// servePeerWarm fills one file of a job for its coordinator and answers
// with NDJSON: progress events while the blob fills, then the outcome.
// Errors after the header are the last event, not a status.
func (c *Client) servePeerWarm(w http.ResponseWriter, r *http.Request) {
	var in node.PeerWarmRequest
	if err := decodePeer(r, &in); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	enc := json.NewEncoder(w)
	send := func(ev node.PeerWarmEvent) {
		enc.Encode(ev)
		rc.Flush()
	}
	res, err := c.node.WarmLocal(r.Context(), in, func(written int64) { send(node.PeerWarmEvent{Written: written}) })
	send(node.WarmDone(res, err))
}
