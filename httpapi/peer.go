package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// servePeer answers the reserved /-/peer/ routes. Only other nodes, signed
// with the cluster secret, may call them: they trust the caller to have
// routed the request, so a client reaching them could bypass access control.
// A peer request is served here as owner and never forwarded again.
func (c *Client) servePeer(w http.ResponseWriter, r *http.Request, p string) {
	if err := c.node.VerifyPeer(r); err != nil {
		writeJSONError(w, http.StatusForbidden, "PeerUnauthorized", "peer routes need the cluster secret")
		return
	}
	if c.cfg.RequirePeerCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		writeJSONError(w, http.StatusForbidden, "PeerUnauthorized", "peer routes need a node certificate")
		return
	}
	switch {
	case p == node.PeerResolvePath && r.Method == http.MethodPost:
		var in node.PeerFileRequest
		if err := decodePeer(r, &in); err != nil {
			writeError(w, err)
			return
		}
		req, err := fileRequestFromPeer(in)
		if err != nil {
			writeError(w, err)
			return
		}
		annotate(w, req.Repo, string(req.Revision), string(req.Path))
		if req.Token, err = c.node.OpenPeerToken(in.Token); err != nil {
			writeJSONError(w, http.StatusForbidden, "PeerUnauthorized", "undecryptable peer token")
			return
		}
		f, err := c.node.ResolveLocal(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c.node.ToPeer(f))
	case p == node.PeerAPIPath && r.Method == http.MethodPost:
		var in node.PeerAPIRequest
		if err := decodePeer(r, &in); err != nil {
			writeError(w, err)
			return
		}
		repo, err := hf.NewRepo(in.Type, in.ID)
		if err != nil {
			writeError(w, err)
			return
		}
		var rev hf.Revision
		if in.Revision != "" {
			if rev, err = hf.ParseRevision(in.Revision); err != nil {
				writeError(w, err)
				return
			}
		}
		annotate(w, repo, string(rev), in.Path)
		token, err := c.node.OpenPeerToken(in.Token)
		if err != nil {
			writeJSONError(w, http.StatusForbidden, "PeerUnauthorized", "undecryptable peer token")
			return
		}
		resp, err := c.node.APILocal(r.Context(), node.APIRequest{
			Remote: in.Remote, Repo: repo, Endpoint: in.Endpoint, Revision: rev, Path: in.Path, Query: in.Query,
			Body: in.Body, ContentType: in.ContentType, Token: token,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	case p == node.PeerBlobPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		c.servePeerBlob(w, r)
	case p == node.PeerWarmPath && r.Method == http.MethodPost:
		c.servePeerWarm(w, r)
	case p == node.PeerXetXorbPath && r.Method == http.MethodGet:
		c.servePeerXorb(w, r)
	case (p == node.PeerXetReconPath || p == node.PeerXetEnsurePath) && r.Method == http.MethodPost:
		var in node.PeerXetRequest
		if err := decodePeer(r, &in); err != nil {
			writeError(w, err)
			return
		}
		var out any
		var err error
		if p == node.PeerXetReconPath {
			out, err = c.node.XetRecordPeer(r.Context(), in)
		} else {
			out, err = c.node.XetEnsurePeer(r.Context(), in)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	case p == node.PeerXetXorbOpPath && r.Method == http.MethodPost:
		var in node.PeerXorbOp
		if err := decodePeer(r, &in); err != nil {
			writeError(w, err)
			return
		}
		out, err := c.node.XorbOpLocal(r.Context(), in)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	default:
		writeError(w, errNotFound)
	}
}

// servePeerBlob serves a blob as its owner (or, with local=1, only if it is
// on this node's disk: a peer looking for a copy).
func (c *Client) servePeerBlob(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t, err := hf.ParseRepoType(q.Get("type"))
	if err != nil {
		writeError(w, err)
		return
	}
	repo, err := hf.NewRepo(t, q.Get("repo"))
	if err != nil {
		writeError(w, err)
		return
	}
	path, err := hf.ParsePath(q.Get("path"))
	if err != nil {
		writeError(w, err)
		return
	}
	annotate(w, repo, q.Get("commit"), string(path))
	size, err := strconv.ParseInt(q.Get("size"), 10, 64)
	if err != nil {
		writeError(w, fmt.Errorf("%w: size", hf.ErrInvalid))
		return
	}
	token, err := c.node.OpenPeerToken(r.Header.Get(node.HeaderPeerToken))
	if err != nil {
		writeJSONError(w, http.StatusForbidden, "PeerUnauthorized", "undecryptable peer token")
		return
	}
	f, err := c.node.FileFromPeer(q.Get("remote"), q.Get("repository"), repo, path, node.PeerFile{Commit: q.Get("commit"), Blob: q.Get("id"), Size: size, Location: q.Get("loc"), XetHash: q.Get("xet")}, token)
	if err != nil {
		writeError(w, err)
		return
	}
	content, err := c.node.OpenLocal(r.Context(), f, q.Get("local") == "1")
	if err != nil {
		writeError(w, err)
		return
	}
	defer content.Close()
	etag := f.ETag()
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/octet-stream")
	c.serveContent(w, r, content, etag, nil)
}

func fileRequestFromPeer(in node.PeerFileRequest) (node.FileRequest, error) {
	repo, err := hf.NewRepo(in.Type, in.ID)
	if err != nil {
		return node.FileRequest{}, err
	}
	rev, err := hf.ParseRevision(in.Revision)
	if err != nil {
		return node.FileRequest{}, err
	}
	p, err := hf.ParsePath(in.Path)
	if err != nil {
		return node.FileRequest{}, err
	}
	return node.FileRequest{Remote: in.Remote, Repository: in.Repository, Repo: repo, Revision: rev, Path: p, Token: in.Token}, nil
}

func decodePeer(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody)).Decode(v); err != nil {
		return fmt.Errorf("%w: peer request: %v", hf.ErrInvalid, err)
	}
	return nil
}

// writeJSONError answers with a status, an error code and a JSON message.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set(hf.HeaderErrorCode, code)
	w.Header().Set(hf.HeaderErrorMessage, msg)
	writeJSON(w, status, map[string]string{"error": msg})
}
