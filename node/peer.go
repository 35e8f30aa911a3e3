package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// Peer routes on the client port; every one requires PeerAuth.
const (
	PeerResolvePath = "/-/peer/resolve"
	PeerAPIPath     = "/-/peer/api"
	PeerBlobPath    = "/-/peer/blob"
	// Xet: a file's reconstruction and fill from its owner, operations
	// on a xorb's chunks and a client's xorb range from the xorb's owner.
	PeerXetReconPath  = "/-/peer/xet/recon"
	PeerXetEnsurePath = "/-/peer/xet/ensure"
	PeerXetXorbOpPath = "/-/peer/xet/xorbop"
	PeerXetXorbPath   = "/-/peer/xet/xorb"
)

// errPeerDown means a peer could not be reached: the next one is tried.
var errPeerDown = errors.New("node: peer unreachable")

// PeerFileRequest is a FileRequest on the wire between nodes.
type PeerFileRequest struct {
	Remote     string      `json:"remote"`
	Repository string      `json:"repository,omitempty"`
	Access     string      `json:"access,omitempty"`
	Type       hf.RepoType `json:"type"`
	ID         string      `json:"id"`
	Revision   string      `json:"revision"`
	Path       string      `json:"path"`
	Token      string      `json:"token,omitempty"`
}

// PeerFile is a File on the wire between nodes.
type PeerFile struct {
	Commit             string `json:"commit"`
	Blob               string `json:"blob"`
	Size               int64  `json:"size"`
	ContentType        string `json:"content_type,omitempty"`
	ContentDisposition string `json:"content_disposition,omitempty"`
	Stale              bool   `json:"stale,omitempty"`
	Location           string `json:"location,omitempty"`
	XetHash            string `json:"xet_hash,omitempty"`
	// RefFreshMillis is how much longer the owner holds the branch's or
	// tag's commit fresh, in milliseconds: the asking node may keep the
	// commit that long and answer from memory meanwhile. 0 (a commit
	// revision, a stale answer, an owner without the field): do not keep it.
	RefFreshMillis int64 `json:"ref_fresh_ms,omitempty"`
}

// PeerAPIRequest is an APIRequest on the wire between nodes.
type PeerAPIRequest struct {
	Remote      string      `json:"remote"`
	Type        hf.RepoType `json:"type"`
	ID          string      `json:"id"`
	Endpoint    string      `json:"endpoint"`
	Revision    string      `json:"revision,omitempty"`
	Path        string      `json:"path,omitempty"`
	Query       url.Values  `json:"query,omitempty"`
	Body        []byte      `json:"body,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	Token       string      `json:"token,omitempty"`
}

// ToPeer encodes a file this node resolved as the repository's owner for
// the peer that asked.
func (n *Node) ToPeer(f *File) PeerFile {
	pf := PeerFile{Commit: f.Commit, Blob: f.Blob.String(), Size: f.Size, ContentType: f.ContentType,
		ContentDisposition: f.ContentDisposition, Stale: f.Stale, Location: f.location, XetHash: f.XetHash}
	if !f.Stale && f.remote != nil {
		pf.RefFreshMillis = n.freshMillis(f.remote, f.refAt)
	}
	return pf
}

// FileFromPeer rebuilds a File that a peer sent (or that a peer asks this
// node to serve), for repo and path of a remote, fetched upstream with token.
func (n *Node) FileFromPeer(remote, repository string, repo hf.Repo, p hf.Path, pf PeerFile, token string) (*File, error) {
	r, err := n.remote(remote)
	if err != nil {
		return nil, err
	}
	id, err := hf.ParseBlobID(pf.Blob)
	if err != nil {
		return nil, err
	}
	if !hf.IsCommit(pf.Commit) || pf.Size < 0 || (pf.XetHash != "" && !hf.IsXetHash(pf.XetHash)) {
		return nil, fmt.Errorf("%w: peer file %+v", hf.ErrInvalid, pf)
	}
	return &File{Repo: repo, Commit: pf.Commit, Path: p, Blob: id, Size: pf.Size, ContentType: pf.ContentType,
		ContentDisposition: pf.ContentDisposition, Stale: pf.Stale, XetHash: pf.XetHash, remote: r, repository: repository, token: token, location: pf.Location}, nil
}

// peerClient makes authenticated requests to other nodes.
type peerClient struct {
	http *http.Client
	auth PeerAuth
}

func newPeerClient(auth PeerAuth, tlsConfig *tls.Config) *peerClient {
	return &peerClient{auth: auth, http: &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:       tlsConfig,
			DialContext:           peerDialer().DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 5 * time.Minute, // an owner may wait on the Hub
			DisableCompression:    true,
			ForceAttemptHTTP2:     false,
			ReadBufferSize:        256 << 10,
			WriteBufferSize:       64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (p *peerClient) close() { p.http.CloseIdleConnections() }

func (p *peerClient) do(ctx context.Context, method string, peer Peer, path string, q url.Values, body []byte, hdr http.Header) (*http.Response, error) {
	if peer.ClientURL == "" {
		return nil, fmt.Errorf("%w: %s has no client URL", errPeerDown, peer.Name)
	}
	u := strings.TrimRight(peer.ClientURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderHop, "1")
	p.auth.Sign(req)
	resp, err := p.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	return resp, nil
}

// call posts a JSON request to a peer and decodes its JSON answer, or the
// Hub-shaped error it answered with.
func (p *peerClient) call(ctx context.Context, peer Peer, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := p.do(ctx, http.MethodPost, peer, path, nil, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return peerError(resp, raw)
	}
	return json.Unmarshal(raw, out)
}

// peerError turns a peer's error answer back into the error it stood for.
func peerError(resp *http.Response, raw []byte) error {
	code := resp.Header.Get(hf.HeaderErrorCode)
	msg := resp.Header.Get(hf.HeaderErrorMessage)
	switch {
	case resp.StatusCode == http.StatusForbidden && code == "PeerUnauthorized":
		return fmt.Errorf("%w: peer refused our signature (cluster secret mismatch?)", ErrPeerAuth)
	case code == "UpstreamUnreachable":
		return fmt.Errorf("%w: via peer: %s", hubclient.ErrUnreachable, msg)
	case code == "BadUpstreamResponse":
		return fmt.Errorf("%w: via peer: %s", hubclient.ErrBadResponse, msg)
	case resp.StatusCode >= 500 && code == "":
		return fmt.Errorf("%w: peer answered %d", errPeerDown, resp.StatusCode)
	}
	if msg == "" {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(raw, &e)
		msg = e.Error
	}
	he := &hubclient.Error{Status: resp.StatusCode, Code: code, Message: msg, RepoCommit: resp.Header.Get(hf.HeaderRepoCommit)}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		he.RetryAfter = time.Duration(ra) * time.Second
	}
	return he
}

// blob asks a peer for a blob's bytes. local=true asks only whether the peer
// has it on disk (no fill). hdr carries the caller's Range and conditionals.
func (p *peerClient) blob(ctx context.Context, peer Peer, f *File, hdr http.Header, local bool) (*http.Response, error) {
	req, err := p.blobRequest(ctx, peer, f, hdr, local)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s: %v", errPeerDown, peer.Name, err)
	}
	return resp, nil
}

// blobRequest is a signed peer request for a blob.
func (p *peerClient) blobRequest(ctx context.Context, peer Peer, f *File, hdr http.Header, local bool) (*http.Request, error) {
	if peer.ClientURL == "" {
		return nil, fmt.Errorf("%w: %s has no client URL", errPeerDown, peer.Name)
	}
	q := url.Values{
		"remote":     {f.remote.Name},
		"repository": {f.repository},
		"id":         {f.Blob.String()}, "type": {string(f.Repo.Type)}, "repo": {f.Repo.ID},
		"commit": {f.Commit}, "path": {string(f.Path)}, "size": {strconv.FormatInt(f.Size, 10)},
	}
	if local {
		q.Set("local", "1")
	}
	if f.location != "" {
		q.Set("loc", f.location)
	}
	if f.XetHash != "" {
		q.Set("xet", f.XetHash) // the owner may assemble the blob from Xet chunks
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(peer.ClientURL, "/")+PeerBlobPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"Range", "If-Range", "If-None-Match"} {
		if v := hdr.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	if f.token != "" {
		req.Header.Set(HeaderPeerToken, p.auth.SealToken(f.token))
	}
	req.Header.Set(HeaderHop, "1")
	p.auth.Sign(req)
	return req, nil
}
