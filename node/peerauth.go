package node

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Peer request headers.
const (
	// HeaderPeerAuth carries "<unix seconds>.<hex hmac>" over the method, the
	// escaped path and query, and the time, keyed by the cluster secret.
	HeaderPeerAuth = "X-Hfcache-Peer-Auth"
	// HeaderHop marks a request forwarded by a peer: it is never forwarded again.
	HeaderHop = "X-Hfcache-Hop"
	// HeaderPeerToken carries the upstream token a peer may use to fill on
	// behalf of the caller it forwards for. Peer routes are authenticated,
	// so a client cannot set it.
	HeaderPeerToken = "X-Hfcache-Upstream-Token"
)

// ErrPeerAuth is returned for a peer request that is not signed with the
// cluster secret, or whose signature is outside the replay window.
var ErrPeerAuth = errors.New("node: peer request not authenticated")

// PeerAuth signs and verifies peer requests with a key derived from the
// cluster secret. A zero PeerAuth (no secret) refuses every peer request.
type PeerAuth struct {
	key    []byte
	window time.Duration
	now    func() time.Time
	aead   cipher.AEAD // encrypts upstream tokens carried between nodes
}

// NewPeerAuth derives the peer key from the cluster secret.
func NewPeerAuth(secret string, now func() time.Time) PeerAuth {
	if secret == "" {
		return PeerAuth{}
	}
	k := sha256.Sum256([]byte("hfcache-peer\x00" + secret))
	return PeerAuth{key: k[:], window: time.Minute, now: now, aead: deriveAEAD(secret, "hfcache-peer-token")}
}

// deriveAEAD is AES-256-GCM under a key derived from the cluster secret
// for one purpose (label), so no two uses share a key.
func deriveAEAD(secret, label string) cipher.AEAD {
	k := sha256.Sum256([]byte(label + "\x00" + secret))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// SealToken encrypts an upstream token for a peer, so it never crosses the
// node network in the clear even without TLS. "" stays "".
func (a PeerAuth) SealToken(token string) string {
	if token == "" || a.aead == nil {
		return ""
	}
	nonce := make([]byte, a.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(a.aead.Seal(nonce, nonce, []byte(token), nil))
}

// OpenToken decrypts a token a peer sealed.
func (a PeerAuth) OpenToken(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || a.aead == nil || len(raw) < a.aead.NonceSize() {
		return "", ErrPeerAuth
	}
	pt, err := a.aead.Open(nil, raw[:a.aead.NonceSize()], raw[a.aead.NonceSize():], nil)
	if err != nil {
		return "", ErrPeerAuth
	}
	return string(pt), nil
}

// Enabled reports whether a secret is configured.
func (a PeerAuth) Enabled() bool { return len(a.key) > 0 }

func (a PeerAuth) mac(method, target string, ts int64) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(method + "\n" + target + "\n" + strconv.FormatInt(ts, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// Sign adds the authentication header to a request to a peer.
func (a PeerAuth) Sign(r *http.Request) {
	ts := a.now().Unix()
	r.Header.Set(HeaderPeerAuth, strconv.FormatInt(ts, 10)+"."+a.mac(r.Method, r.URL.RequestURI(), ts))
}

// Verify checks a peer request's authentication header.
func (a PeerAuth) Verify(r *http.Request) error {
	if !a.Enabled() {
		return ErrPeerAuth
	}
	tsStr, sig, ok := strings.Cut(r.Header.Get(HeaderPeerAuth), ".")
	if !ok {
		return ErrPeerAuth
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return ErrPeerAuth
	}
	if d := a.now().Sub(time.Unix(ts, 0)); d > a.window || d < -a.window {
		return ErrPeerAuth
	}
	if !hmac.Equal([]byte(sig), []byte(a.mac(r.Method, r.URL.RequestURI(), ts))) {
		return ErrPeerAuth
	}
	return nil
}
