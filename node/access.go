package node

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// accessCache remembers what the Hub said about who may read a repository,
// so cached content of a gated or private repository is only served to
// callers whose own token the Hub accepted recently.
//
//   - A repository is public once the Hub served it to an anonymous request.
//   - A (token, repository) pair is granted for the auth TTL once the Hub
//     served that repository to a request carrying the token.
//
// Anything else goes to the Hub, with the caller's token, before a byte of
// cached content is served. Tokens are kept only as hashes.
type accessCache struct {
	now func() time.Time

	mu     sync.Mutex
	public map[string]time.Time // repo key → when last seen public
	grants map[grantKey]time.Time
}

type grantKey struct {
	token [16]byte // tokenSum of the token
	repo  string
}

func newAccessCache(now func() time.Time) *accessCache {
	return &accessCache{now: now, public: make(map[string]time.Time), grants: make(map[grantKey]time.Time)}
}

// tokenSum is how a token is remembered: never in the clear.
func tokenSum(token string) [16]byte {
	s := sha256.Sum256([]byte(token))
	return [16]byte(s[:16])
}

// tokenHash is tokenSum as text, for keys built as strings.
func tokenHash(token string) string {
	s := tokenSum(token)
	return hex.EncodeToString(s[:])
}

// allowed reports whether a caller with token may read repoKey without
// asking the Hub, given a freshness window ttl.
// repoKey is bytes so that the hit path can build it on its stack.
func (a *accessCache) allowed(repoKey []byte, token string, ttl time.Duration) bool {
	now := a.now()
	a.mu.Lock()
	at, ok := a.public[string(repoKey)]
	a.mu.Unlock()
	if ok && now.Sub(at) < ttl {
		return true // the usual hit, token or not: nothing to hash
	}
	if token == "" {
		return false
	}
	k := grantKey{tokenSum(token), string(repoKey)} // hashed outside the lock
	a.mu.Lock()
	at, ok = a.grants[k]
	a.mu.Unlock()
	return ok && now.Sub(at) < ttl
}

// everPublic reports whether repoKey was ever seen public (used while the Hub
// is unreachable: public content stays available, gated content does not).
func (a *accessCache) everPublic(repoKey []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.public[string(repoKey)]
	return ok
}

// accepted records that the Hub served repoKey to a request with token.
func (a *accessCache) accepted(repoKey, token string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if token == "" {
		a.public[repoKey] = now
		return
	}
	if len(a.grants) > 100_000 {
		for k, at := range a.grants {
			if now.Sub(at) > time.Hour {
				delete(a.grants, k)
			}
		}
	}
	a.grants[grantKey{tokenSum(token), repoKey}] = now
}

// refused records that the Hub refused repoKey to a request with token.
func (a *accessCache) refused(repoKey, token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if token == "" {
		delete(a.public, repoKey)
		return
	}
	delete(a.grants, grantKey{tokenSum(token), repoKey})
}
