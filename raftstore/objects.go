package raftstore

import (
	"log/slog"
	"slices"
	"strings"
)

// Defaults filled in when a field is left empty.
const (
	DefaultRemoteURL = "https://huggingface.co"
	DefaultRefTTL    = "60s"
	DefaultRevision  = "main"
)

// Xet modes of a remote.
const (
	XetNative = "native"
	XetHidden = "hidden"
)

// Remote policies.
const (
	PolicyOnDemand  = "on_demand" // store on first use (default)
	PolicyStreamed  = "streamed"  // pass through, store nothing
	PolicyImmediate = "immediate" // also pre-fetch what a repository's warm list names
)

// Distribution access modes.
const (
	AccessCaller = "caller" // gated/private content only for callers the Hub accepted (default)
	AccessRemote = "remote" // the remote's token is used for callers who bring none
)

// Remote is an upstream Hub.
type Remote struct {
	Name string `json:"name"`
	// URL is the upstream's http(s) base URL, default "https://huggingface.co".
	URL string `json:"url"`
	// Token is the remote's own token. Write-only at the API layer (send
	// Redacted() to clients); the FSM stores it. A PUT with an empty Token
	// and TokenSet true keeps the stored token, so a GET → edit → PUT round
	// trip does not erase it; TokenSet false with no Token clears it.
	Token string `json:"token,omitempty"`
	// TokenSet is computed by the FSM: whether a token is stored.
	TokenSet bool `json:"token_set"`
	// Policy is "on_demand" (default), "streamed" or "immediate".
	Policy string `json:"policy"`
	// RefTTL is a Go duration, default "60s", >= 0.
	RefTTL string `json:"ref_ttl"`
	// Include and Exclude are path.Match globs over repo ids ("org/*");
	// an empty Include allows all.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// MaxFileSize is the largest file this remote serves, a byte size like
	// "50GiB" (see ParseBytes); "" means no limit.
	MaxFileSize string `json:"max_file_size,omitempty"`
	// Xet is "native" (default: clients speak Xet to the cache, which serves
	// chunks from its own store) or "hidden" (clients are made to download
	// every file over plain HTTP).
	Xet string `json:"xet"`
	// Version is the Raft index of the last change (read-only).
	Version uint64 `json:"version"`
}

// Redacted is the remote without its token, as the API shows it.
func (r Remote) Redacted() Remote {
	r.TokenSet = r.TokenSet || r.Token != ""
	r.Token = ""
	r.Include = slices.Clone(r.Include)
	r.Exclude = slices.Clone(r.Exclude)
	return r
}

// LogValue keeps the token out of logs.
func (r Remote) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", r.Name), slog.String("url", r.URL),
		slog.Bool("token_set", r.TokenSet || r.Token != ""), slog.Uint64("version", r.Version))
}

func (r Remote) clone() Remote {
	r.Include = slices.Clone(r.Include)
	r.Exclude = slices.Clone(r.Exclude)
	return r
}

// WarmEntry names a repo revision a repository keeps filled.
type WarmEntry struct {
	Type     string   `json:"type"` // model | dataset | space | kernel
	Repo     string   `json:"repo"`
	Revision string   `json:"revision"` // default "main"
	Include  []string `json:"include,omitempty"`
}

// Repository is what a distribution serves: a remote, a quota, a warm list.
type Repository struct {
	Name   string      `json:"name"`
	Remote string      `json:"remote"`
	Warm   []WarmEntry `json:"warm,omitempty"`
	// Quota is a byte size like "500GiB"; "" means none. See ParseBytes.
	Quota   string `json:"quota,omitempty"`
	Version uint64 `json:"version"`
}

func (r Repository) clone() Repository {
	if r.Warm != nil {
		w := make([]WarmEntry, len(r.Warm))
		for i, e := range r.Warm {
			e.Include = slices.Clone(e.Include)
			w[i] = e
		}
		r.Warm = w
	}
	return r
}

// Distribution is a base path clients point at.
type Distribution struct {
	Name string `json:"name"`
	// BasePath is normalised: "" (the root) or "/seg[/seg...]" without a
	// trailing slash.
	BasePath   string `json:"base_path"`
	Repository string `json:"repository"`
	// Access is "caller" (default) or "remote".
	Access  string `json:"access"`
	Version uint64 `json:"version"`
}

// Snapshot is the configuration at one Raft index: a deep copy, safe to
// keep and to read without locks.
type Snapshot struct {
	Remotes       map[string]Remote
	Repositories  map[string]Repository
	Distributions map[string]Distribution
	// Index is the last Raft index the state reflects.
	Index uint64
}

// Redacted is the snapshot with every remote's token removed (TokenSet
// kept), for anything that leaves the node: API responses, status pages,
// logs.
func (s Snapshot) Redacted() Snapshot {
	remotes := make(map[string]Remote, len(s.Remotes))
	for k, r := range s.Remotes {
		remotes[k] = r.Redacted()
	}
	s.Remotes = remotes
	return s
}

// DistributionByPath finds the distribution whose base path is the longest
// prefix of p on a segment boundary ("/hf" matches "/hf" and "/hf/x", not
// "/hfx"; "" matches everything). rest is p without the base path: "" or
// starting with "/".
func (s Snapshot) DistributionByPath(p string) (d Distribution, rest string, ok bool) {
	best := -1
	for _, cand := range s.Distributions {
		bp := cand.BasePath
		if bp != "" && !(p == bp || strings.HasPrefix(p, bp+"/")) {
			continue
		}
		// Longest wins; equal lengths cannot happen (base paths are
		// unique), but break ties by name so the answer never depends on
		// map order.
		if len(bp) > best || (len(bp) == best && cand.Name < d.Name) {
			best, d = len(bp), cand
		}
	}
	if best < 0 {
		return Distribution{}, "", false
	}
	return d, p[len(d.BasePath):], true
}

// DefaultSeed is the configuration a fresh cluster starts with: a remote
// "default" to https://huggingface.co, a repository "default" on it, and a
// distribution "default" serving it at the root, so a node with no setup
// is useful.
func DefaultSeed() []Command {
	return []Command{
		PutRemote(Remote{Name: "default", URL: DefaultRemoteURL, Policy: PolicyOnDemand, RefTTL: DefaultRefTTL}),
		PutRepository(Repository{Name: "default", Remote: "default"}),
		PutDistribution(Distribution{Name: "default", BasePath: "", Repository: "default", Access: AccessCaller}),
	}
}
