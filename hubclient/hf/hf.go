// Package hf is the Hugging Face Hub's vocabulary as typed values: repository
// types and ids, revisions, commits, repository paths and content addresses.
//
// Everything a client sends (repo ids, revisions, file paths) is untrusted.
// It is parsed and validated once, at the HTTP edge, into the types of this
// package; code past the edge only handles values that passed validation, and
// nothing derived from them ever names a file on disk (blobs are stored under
// their BlobID only).
package hf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"unicode/utf8"
)

// RepoType is the kind of a Hub repository.
type RepoType string

// The repository types the Hub serves.
const (
	Model   RepoType = "model"
	Dataset RepoType = "dataset"
	Space   RepoType = "space"
	Kernel  RepoType = "kernel"
)

// RepoTypes lists every repository type, models first.
var RepoTypes = []RepoType{Model, Dataset, Space, Kernel}

// ParseRepoType accepts a singular ("dataset") or plural ("datasets") type name.
func ParseRepoType(s string) (RepoType, error) {
	switch strings.TrimSuffix(s, "s") {
	case "model", "":
		return Model, nil
	case "dataset":
		return Dataset, nil
	case "space":
		return Space, nil
	case "kernel":
		return Kernel, nil
	}
	return "", fmt.Errorf("%w: unknown repo type %q", ErrInvalid, s)
}

// Plural is the type as it appears in API paths: "models", "datasets", ...
func (t RepoType) Plural() string { return string(t) + "s" }

// URLPrefix is the prefix of file URLs: "" for models, "datasets/" for datasets.
func (t RepoType) URLPrefix() string {
	if t == Model || t == "" {
		return ""
	}
	return t.Plural() + "/"
}

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid")

// Repo names one repository on the Hub.
type Repo struct {
	Type RepoType
	ID   string // "namespace/name", or a legacy single-segment "name"
}

// validRepoSegment is what the Hub accepts as a namespace or a name:
// ^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$, by hand (it runs on
// every request).
func validRepoSegment(s string) bool {
	if len(s) == 0 || len(s) > 96 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlnum(c), c == '_':
		case (c == '.' || c == '-') && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// isLowerHex reports whether s is n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// NewRepo validates a repo id. It accepts "ns/name" and legacy "name".
func NewRepo(t RepoType, id string) (Repo, error) {
	if _, err := ParseRepoType(string(t)); err != nil || t == "" {
		return Repo{}, fmt.Errorf("%w: repo type %q", ErrInvalid, t)
	}
	ns, name, two := strings.Cut(id, "/")
	segs := [2]string{ns, name}
	n := 1
	if two {
		n = 2
	}
	if strings.Contains(name, "/") || id == "" {
		return Repo{}, fmt.Errorf("%w: repo id %q", ErrInvalid, id)
	}
	for _, s := range segs[:n] {
		if !validRepoSegment(s) || strings.Contains(s, "..") || strings.Contains(s, "--") {
			return Repo{}, fmt.Errorf("%w: repo id %q", ErrInvalid, id)
		}
	}
	return Repo{Type: t, ID: id}, nil
}

// Key is the repository's key on the ring and in caches: "{type}/{id}".
func (r Repo) Key() string { return string(r.Type) + "/" + r.ID }

func (r Repo) String() string { return r.Key() }

// FilePath is the URL path of a file: "[datasets/]{id}/{kind}/{rev}/{path}",
// with the revision encoded as one segment and the path encoded per segment,
// the way huggingface_hub builds it. kind is "resolve" or "raw".
func (r Repo) FilePath(kind string, rev Revision, path Path) string {
	return "/" + r.Type.URLPrefix() + r.ID + "/" + kind + "/" + rev.Escaped() + "/" + path.Escaped()
}

// APIPath is "/api/{type}s/{id}" followed by suffix (which must be escaped).
func (r Repo) APIPath(suffix string) string {
	return "/api/" + r.Type.Plural() + "/" + r.ID + suffix
}

// Revision is a branch, tag, ref ("refs/pr/1"), short or full commit sha, or "HEAD".
type Revision string

// ParseRevision validates a decoded revision.
func ParseRevision(s string) (Revision, error) {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: revision %q", ErrInvalid, s)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\\' || c == '?' || c == '#' || c == ' ' {
			return "", fmt.Errorf("%w: revision %q", ErrInvalid, s)
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: revision %q", ErrInvalid, s)
		}
	}
	return Revision(s), nil
}

// IsCommit reports whether the revision is a full 40-hex lowercase commit,
// the only form clients (and this cache) treat as immutable.
func (r Revision) IsCommit() bool { return IsCommit(string(r)) }

// Escaped is the revision as one URL path segment ("refs%2Fpr%2F1").
func (r Revision) Escaped() string { return url.PathEscape(string(r)) }

// IsCommit reports whether s is a full 40-hex lowercase commit sha.
func IsCommit(s string) bool { return isLowerHex(s, 40) }

// Path is a file's path inside a repository: "dir/file.bin", never absolute,
// never with "." or ".." segments.
type Path string

// ParsePath validates a decoded repository path.
func ParsePath(s string) (Path, error) {
	if s == "" || len(s) > 4096 || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: path %q", ErrInvalid, s)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: path %q", ErrInvalid, s)
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: path %q", ErrInvalid, s)
		}
	}
	return Path(s), nil
}

// Escaped percent-encodes each segment and keeps "/" literal (Python's quote(safe="/")).
func (p Path) Escaped() string {
	segs := strings.Split(string(p), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// Base is the last segment of the path.
func (p Path) Base() string {
	s := string(p)
	return s[strings.LastIndexByte(s, '/')+1:]
}

// LogValue logs a repository as "{type}/{id}".
func (r Repo) LogValue() slog.Value { return slog.StringValue(r.Key()) }
