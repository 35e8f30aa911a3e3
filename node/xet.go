package node

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"golang.org/x/sync/singleflight"
)

// Xet modes of a remote.
const (
	// XetNative lets clients speak Xet to the cache: resolve advertises the
	// cache as the CAS, and the cache serves tokens, reconstructions and
	// xorb ranges from its chunk store (the default).
	XetNative = "native"
	// XetHidden hides Xet: clients download every file over plain HTTP.
	XetHidden = "hidden"
)

// Xet errors, mapped to HTTP by httpapi.
var (
	// ErrXetToken: the bearer token of a CAS request is not one this
	// cluster issued, or it expired (401; clients fetch a new one).
	ErrXetToken = errors.New("node: Xet access token invalid or expired")
	// ErrXetURL: a xorb URL is not signed by this cluster, expired, or
	// asked for bytes outside its signed ranges (403; clients ask for the
	// reconstruction again).
	ErrXetURL = errors.New("node: xorb URL invalid, expired or outside its signed ranges")
	// ErrXetHidden: the remote hides Xet (404 on the token route, as the
	// cache always answered before it spoke Xet).
	ErrXetHidden = errors.New("node: Xet is not available through this cache")
)

// xetTokenTTL is how long a cache-issued Xet token is valid. Clients ask
// for a new one a minute before it expires.
const xetTokenTTL = time.Hour

// xetURLTTL is how long a signed xorb URL handed out in a reconstruction
// stays valid; a client past it gets 403 and asks for the reconstruction
// again, as it does with the Hub's CAS.
const xetURLTTL = time.Hour

// xetState is the node's Xet machinery: keys for the tokens and URLs it
// issues, the upstream tokens it holds, the upstream URLs of the
// reconstructions it fetched, and the per-xorb locks and wake-ups of fills.
type xetState struct {
	aead     cipher.AEAD // seals grants into access tokens
	signKey  []byte      // signs xorb URLs
	tokenTTL time.Duration

	group singleflight.Group

	mu       sync.Mutex
	upstream map[string]*hubclient.XetToken // scope + token hash → upstream token
	urls     map[string]*upstreamRecon      // file hash → upstream fetch URLs
	xorbs    map[string]*xorbState          // xorb hash → lock and wake-up
}

func newXetState(secret string) *xetState {
	if secret == "" {
		// A node without a cluster secret (a single node) signs with a key
		// of its own: its tokens end with the process, and clients fetch
		// new ones.
		b := make([]byte, 32)
		rand.Read(b)
		secret = hex.EncodeToString(b)
	}
	sk := sha256.Sum256([]byte("hfcache-xet-url\x00" + secret))
	return &xetState{
		aead: deriveAEAD(secret, "hfcache-xet-token"), signKey: sk[:], tokenTTL: xetTokenTTL,
		upstream: make(map[string]*hubclient.XetToken),
		urls:     make(map[string]*upstreamRecon),
		xorbs:    make(map[string]*xorbState),
	}
}

// xetGrant is what a cache-issued Xet access token stands for: a caller
// the Hub let read a repository, until Exp. It travels sealed (encrypted
// and authenticated with the cluster secret) inside the token, so any node
// can check it and fill on the caller's behalf without shared state. The
// caller's own Hub token rides along (the caller has it anyway); the
// remote's token never does: Access "remote" names it instead.
type xetGrant struct {
	Remote string      `json:"r"`
	Type   hf.RepoType `json:"t"`
	ID     string      `json:"i"`
	Rev    string      `json:"v"`
	Access string      `json:"a,omitempty"`
	Token  string      `json:"k,omitempty"`
	Exp    int64       `json:"e"`
}

const xetTokenPrefix = "hfcx_"

func (x *xetState) seal(g xetGrant) string {
	raw, _ := json.Marshal(g)
	nonce := make([]byte, x.aead.NonceSize())
	rand.Read(nonce)
	return xetTokenPrefix + base64.RawURLEncoding.EncodeToString(x.aead.Seal(nonce, nonce, raw, []byte(xetTokenPrefix)))
}

// open checks an access token and returns its grant; ErrXetToken when it
// was not issued by this cluster or has expired.
func (x *xetState) open(token string, now time.Time) (xetGrant, error) {
	var g xetGrant
	s, ok := strings.CutPrefix(token, xetTokenPrefix)
	if !ok {
		return g, ErrXetToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < x.aead.NonceSize() {
		return g, ErrXetToken
	}
	pt, err := x.aead.Open(nil, raw[:x.aead.NonceSize()], raw[x.aead.NonceSize():], []byte(xetTokenPrefix))
	if err != nil || json.Unmarshal(pt, &g) != nil {
		return g, ErrXetToken
	}
	if now.Unix() >= g.Exp {
		return g, ErrXetToken
	}
	return g, nil
}

func (x *xetState) sign(parts ...string) string {
	m := hmac.New(sha256.New, x.signKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:20])
}

// XetTokenRequest asks for a Xet read token for a repository at a revision.
type XetTokenRequest struct {
	Remote     string
	Access     string
	Repository string
	Repo       hf.Repo
	Revision   hf.Revision
	Token      string // the caller's Hub token
}

// XetToken is the cache's answer on the Xet token route.
type XetToken struct {
	AccessToken string
	Exp         time.Time
}

// XetToken issues the cache's own Xet access token for a repository. The
// caller's entitlement is the Hub's: the Hub's token route is asked with
// the caller's token (or the remote's, for a distribution that lends it),
// under the same rules as resolve, and its upstream token is kept in the
// cluster for filling. While the Hub is unreachable, a caller the access
// cache already knows may read the repository still gets a token.
func (n *Node) XetToken(ctx context.Context, req XetTokenRequest) (*XetToken, error) {
	r, err := n.admit(req.Remote, req.Repo)
	if err != nil {
		return nil, err
	}
	if r.Xet == XetHidden {
		return nil, ErrXetHidden
	}
	rev := req.Revision
	if rev == "" {
		rev = "main"
	}
	upTok := r.upstreamToken(req.Access, req.Token)
	repoKey := appendScope(nil, r, req.Repo)
	if _, err := n.upstreamXetToken(ctx, r, req.Repo, rev, upTok, true); err != nil {
		if !errors.Is(err, hubclient.ErrUnreachable) || !(n.access.allowed(repoKey, upTok, n.cfg.AuthTTL) || n.access.everPublic(repoKey)) {
			return nil, err
		}
		n.log.Warn("hub unreachable, issuing a Xet token on a remembered grant", "repo", string(repoKey), "err", err)
	}
	exp := n.cfg.Now().Add(n.xet.tokenTTL).Truncate(time.Second)
	g := xetGrant{Remote: r.Name, Type: req.Repo.Type, ID: req.Repo.ID, Rev: string(rev), Access: req.Access, Exp: exp.Unix()}
	if req.Access != AccessRemote || req.Token != "" {
		g.Token = req.Token
	}
	return &XetToken{AccessToken: n.xet.seal(g), Exp: exp}, nil
}

// upstreamXetToken is a valid upstream Xet token for the repository and
// Hub token, from memory or the Hub's token route. fresh asks the Hub even
// if one is held (the token route is the access check).
func (n *Node) upstreamXetToken(ctx context.Context, r *Remote, repo hf.Repo, rev hf.Revision, hubToken string, fresh bool) (*hubclient.XetToken, error) {
	key := scope(r, repo) + "\x00" + tokenHash(hubToken)
	now := n.cfg.Now()
	if !fresh {
		n.xet.mu.Lock()
		t := n.xet.upstream[key]
		n.xet.mu.Unlock()
		if t != nil && t.Exp.Sub(now) > time.Minute {
			return t, nil
		}
	}
	v, err, _ := n.xet.group.Do("token\x00"+key, func() (any, error) {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		t, err := r.Hub.XetReadToken(hctx, repo, rev, hubToken)
		if err != nil {
			if errors.Is(err, hubclient.ErrRepoNotFound) || errors.Is(err, hubclient.ErrGatedRepo) || errors.Is(err, hubclient.ErrUnauthorized) {
				n.access.refused(scope(r, repo), hubToken)
			}
			return nil, err
		}
		n.access.accepted(scope(r, repo), hubToken)
		n.xet.mu.Lock()
		if len(n.xet.upstream) > 10_000 {
			for k, t := range n.xet.upstream {
				if t.Exp.Before(now) {
					delete(n.xet.upstream, k)
				}
			}
		}
		n.xet.upstream[key] = t
		n.xet.mu.Unlock()
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*hubclient.XetToken), nil
}

// grantRemote resolves a grant's remote and upstream Hub token.
func (n *Node) grantRemote(g xetGrant) (*Remote, hf.Repo, string, error) {
	repo, err := hf.NewRepo(g.Type, g.ID)
	if err != nil {
		return nil, hf.Repo{}, "", ErrXetToken
	}
	r, err := n.admit(g.Remote, repo)
	if err != nil {
		return nil, hf.Repo{}, "", err
	}
	if r.Xet == XetHidden {
		return nil, hf.Repo{}, "", ErrXetHidden
	}
	return r, repo, r.upstreamToken(g.Access, g.Token), nil
}

// xetError is a CAS error in the Hub's shape.
func xetError(status int, code, msg string) *hubclient.Error {
	return &hubclient.Error{Status: status, Code: code, Message: msg}
}

var errXetNotFound = xetError(http.StatusNotFound, "XetFileNotFound", "No such Xet file in this repository")
