package node

import (
	"fmt"
	"net/http"
	"path"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// Access modes of a distribution.
const (
	// AccessCaller serves gated and private content only to callers whose
	// own token the Hub accepted.
	AccessCaller = "caller"
	// AccessRemote sends the remote's token for callers who bring none: a
	// deliberate choice to share what that token can read.
	AccessRemote = "remote"
)

// Remote policies.
const (
	PolicyOnDemand  = "on_demand" // store on first use
	PolicyStreamed  = "streamed"  // pass through, store nothing
	PolicyImmediate = "immediate" // also keep the repository's warm list filled
)

// DefaultRemote is the remote a request without one uses.
const DefaultRemote = "default"

// Remote is an upstream Hub and how to use it.
type Remote struct {
	Name    string
	Hub     Hub
	Token   string // the remote's own token; never logged
	Policy  string
	RefTTL  time.Duration
	Include []string // glob patterns over repo ids; empty allows all
	Exclude []string
	// MaxFileSize refuses files larger than this many bytes (0: no limit).
	MaxFileSize int64
	// Xet is XetNative ("" means native) or XetHidden.
	Xet string
}

// XetHidden reports whether the remote hides Xet from clients.
func (r *Remote) XetHidden() bool { return r.Xet == XetHidden }

// checkSize refuses a file over the remote's maximum size, in the Hub's
// error shape (403), before any byte is fetched.
func (r *Remote) checkSize(f *File) error {
	if r.MaxFileSize > 0 && f.Size > r.MaxFileSize {
		return &hubclient.Error{Status: http.StatusForbidden, Code: "FileTooLarge",
			Message: fmt.Sprintf("%s is %d bytes; this cache serves files up to %d bytes from this remote.", f.Path, f.Size, r.MaxFileSize)}
	}
	return nil
}

// Allows reports whether the remote's include/exclude patterns let repoID through.
func (r *Remote) Allows(repoID string) bool {
	for _, g := range r.Exclude {
		if ok, _ := path.Match(g, repoID); ok {
			return false
		}
	}
	if len(r.Include) == 0 {
		return true
	}
	for _, g := range r.Include {
		if ok, _ := path.Match(g, repoID); ok {
			return true
		}
	}
	return false
}

// upstreamToken is the token sent to the Hub on behalf of a caller.
func (r *Remote) upstreamToken(access, callerToken string) string {
	if callerToken == "" && access == AccessRemote {
		return r.Token
	}
	return callerToken
}

// errDenied is the Hub-shaped refusal of a repository the configuration excludes.
func errDenied(repo hf.Repo) error {
	return &hubclient.Error{Status: http.StatusForbidden, Code: "RepoDenied",
		Message: fmt.Sprintf("Access to %s is not allowed by this cache's configuration.", repo.ID)}
}

// ErrUnknownRemote is returned for a request naming a remote that the
// configuration does not have (yet).
var ErrUnknownRemote = fmt.Errorf("node: unknown remote")

// SetRemotes replaces the remotes the node serves from.
func (n *Node) SetRemotes(remotes []*Remote) {
	m := make(map[string]*Remote, len(remotes))
	for _, r := range remotes {
		m[r.Name] = r
	}
	n.remotes.Store(&m)
}

// remote looks a remote up by name ("" is the default).
func (n *Node) remote(name string) (*Remote, error) {
	if name == "" {
		name = DefaultRemote
	}
	if m := n.remotes.Load(); m != nil {
		if r, ok := (*m)[name]; ok {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownRemote, name)
}

// admit finds the remote and checks the repository against its patterns
// before anything is fetched.
func (n *Node) admit(name string, repo hf.Repo) (*Remote, error) {
	r, err := n.remote(name)
	if err != nil {
		return nil, err
	}
	if !r.Allows(repo.ID) {
		return nil, errDenied(repo)
	}
	return r, nil
}
