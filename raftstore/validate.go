package raftstore

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// Validation is pure and deterministic: it reads only the command and the
// state it is checked against (no clock, no network, no environment), so
// the leader's check before raft.Apply and the FSM's check while applying
// reach the same verdict on every node.

var (
	nameRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	baseSegmentRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// reservedFirstSegments are the first path segments the HF routes own at
// the root; a distribution there would shadow them.
var reservedFirstSegments = []string{"-", "api", "datasets", "spaces", "kernels"}

var warmTypes = []string{string(hf.Model), string(hf.Dataset), string(hf.Space), string(hf.Kernel)}

// NormalizeBasePath returns the canonical form of a distribution base path:
// "" for the root, else "/seg[/seg...]" without a trailing slash ("/hf/" →
// "/hf", "hf" → "/hf", "/" → ""). Segments are [A-Za-z0-9._-]+, not "." or
// "..", and the first is not one the HF routes use ("-", "api", "datasets",
// "spaces", "kernels").
func NormalizeBasePath(p string) (string, error) {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "", nil
	}
	p = "/" + strings.TrimPrefix(p, "/")
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		switch {
		case s == "":
			return "", fmt.Errorf("empty segment in %q", p)
		case s == "." || s == "..":
			return "", fmt.Errorf("segment %q is not allowed", s)
		case !baseSegmentRE.MatchString(s):
			return "", fmt.Errorf("segment %q: only letters, digits, '.', '_' and '-' are allowed", s)
		case i == 0 && isReserved(s):
			return "", fmt.Errorf("first segment %q is reserved for the Hub's routes", s)
		}
	}
	return p, nil
}

func isReserved(seg string) bool {
	for _, r := range reservedFirstSegments {
		if strings.EqualFold(seg, r) {
			return true
		}
	}
	return false
}

func checkName(fe fieldErrors, field, name string) {
	if !nameRE.MatchString(name) {
		fe.add(field, "must match %s", nameRE)
	}
}

func checkGlobs(fe fieldErrors, field string, globs []string) {
	for i, g := range globs {
		if g == "" {
			fe.add(fmt.Sprintf("%s[%d]", field, i), "empty pattern")
		} else if _, err := path.Match(g, "org/repo"); err != nil {
			fe.add(fmt.Sprintf("%s[%d]", field, i), "invalid glob %q: %v", g, err)
		}
	}
}

// checkSize checks an optional byte size: "" (meaning none), else a
// positive ParseBytes size.
func checkSize(fe fieldErrors, field, size, none string) {
	if size == "" {
		return
	}
	if n, err := ParseBytes(size); err != nil {
		fe.add(field, "%v", err)
	} else if n <= 0 {
		fe.add(field, "must be positive (leave empty for %s)", none)
	}
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// normalizeRemote fills defaults in place.
func normalizeRemote(r *Remote) {
	if r.URL == "" {
		r.URL = DefaultRemoteURL
	}
	if u, err := url.Parse(r.URL); err == nil && u.Scheme != "" {
		u.Path = strings.TrimRight(u.Path, "/")
		u.RawPath = ""
		r.URL = u.String()
	}
	if r.Policy == "" {
		r.Policy = PolicyOnDemand
	}
	if r.RefTTL == "" {
		r.RefTTL = DefaultRefTTL
	}
	if r.Xet == "" {
		r.Xet = XetNative
	}
}

func validateRemote(r *Remote) fieldErrors {
	fe := fieldErrors{}
	checkName(fe, "name", r.Name)
	u, err := url.Parse(r.URL)
	switch {
	case err != nil:
		fe.add("url", "does not parse: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		fe.add("url", "scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		fe.add("url", "must have a host")
	case u.User != nil:
		fe.add("url", "must not carry credentials (use token)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		fe.add("url", "must not have a query or fragment")
	}
	for _, c := range r.Token {
		if c <= ' ' || c == 0x7f {
			fe.add("token", "must not contain spaces or control characters")
			break
		}
	}
	if !oneOf(r.Policy, PolicyOnDemand, PolicyStreamed, PolicyImmediate) {
		fe.add("policy", "must be %s, %s or %s", PolicyOnDemand, PolicyStreamed, PolicyImmediate)
	}
	if d, err := time.ParseDuration(r.RefTTL); err != nil {
		fe.add("ref_ttl", "not a duration (like \"60s\"): %v", err)
	} else if d < 0 {
		fe.add("ref_ttl", "must not be negative")
	}
	checkGlobs(fe, "include", r.Include)
	checkGlobs(fe, "exclude", r.Exclude)
	checkSize(fe, "max_file_size", r.MaxFileSize, "no limit")
	if !oneOf(r.Xet, XetNative, XetHidden) {
		fe.add("xet", "must be %s or %s", XetNative, XetHidden)
	}
	return fe
}

func normalizeRepository(r *Repository) {
	for i := range r.Warm {
		if r.Warm[i].Revision == "" {
			r.Warm[i].Revision = DefaultRevision
		}
	}
}

func validateRepository(r *Repository, st *state) fieldErrors {
	fe := fieldErrors{}
	checkName(fe, "name", r.Name)
	if r.Remote == "" {
		fe.add("remote", "required")
	} else if _, ok := st.Remotes[r.Remote]; !ok {
		fe.add("remote", "no remote %q", r.Remote)
	}
	checkSize(fe, "quota", r.Quota, "no quota")
	for i, w := range r.Warm {
		f := fmt.Sprintf("warm[%d]", i)
		if !oneOf(w.Type, warmTypes...) {
			fe.add(f+".type", "must be one of %s", strings.Join(warmTypes, ", "))
		} else if _, err := hf.NewRepo(hf.RepoType(w.Type), w.Repo); err != nil {
			fe.add(f+".repo", "invalid repo id %q", w.Repo)
		}
		if _, err := hf.ParseRevision(w.Revision); err != nil {
			fe.add(f+".revision", "invalid revision %q", w.Revision)
		}
		checkGlobs(fe, f+".include", w.Include)
	}
	return fe
}

func normalizeDistribution(d *Distribution) {
	if bp, err := NormalizeBasePath(d.BasePath); err == nil {
		d.BasePath = bp
	}
	if d.Access == "" {
		d.Access = AccessCaller
	}
}

func validateDistribution(d *Distribution, st *state) fieldErrors {
	fe := fieldErrors{}
	checkName(fe, "name", d.Name)
	if _, err := NormalizeBasePath(d.BasePath); err != nil {
		fe.add("base_path", "%v", err)
	} else {
		for _, other := range sortedKeys(st.Distributions) {
			if o := st.Distributions[other]; other != d.Name && o.BasePath == d.BasePath {
				fe.add("base_path", "%q is already used by distribution %q", d.BasePath, other)
			}
		}
	}
	if d.Repository == "" {
		fe.add("repository", "required")
	} else if _, ok := st.Repositories[d.Repository]; !ok {
		fe.add("repository", "no repository %q", d.Repository)
	}
	if !oneOf(d.Access, AccessCaller, AccessRemote) {
		fe.add("access", "must be %s or %s", AccessCaller, AccessRemote)
	}
	return fe
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkVersion enforces IfVersion: the current version (0 when the object
// does not exist) must equal it.
func checkVersion(kind, name string, cur uint64, exists bool, ifVersion *uint64) error {
	if ifVersion == nil {
		return nil
	}
	if !exists {
		cur = 0
	}
	if cur != *ifVersion {
		if !exists {
			return fmt.Errorf("%w: %s %q does not exist (if_version %d)", ErrConflict, kind, name, *ifVersion)
		}
		return fmt.Errorf("%w: %s %q is at version %d, not %d", ErrConflict, kind, name, cur, *ifVersion)
	}
	return nil
}

// check normalises cmd in place (defaults, canonical base path) and checks
// it against st: *ValidationError for bad fields and missing references,
// ErrNotFound for deleting what does not exist, ErrConflict for a failed
// IfVersion or a delete that would leave a reference dangling.
func (st *state) check(cmd *Command) error {
	if cmd.V < 1 || cmd.V > CommandVersion {
		return &ValidationError{Fields: map[string]string{"v": fmt.Sprintf("unsupported command version %d (this node applies up to %d)", cmd.V, CommandVersion)}}
	}
	switch cmd.Op {
	case OpPutRemote:
		if cmd.Remote == nil {
			return &ValidationError{Fields: map[string]string{"remote": "required"}}
		}
		r := cmd.Remote
		normalizeRemote(r)
		if err := validateRemote(r).err(); err != nil {
			return err
		}
		cur, ok := st.Remotes[r.Name]
		return checkVersion("remote", r.Name, cur.Version, ok, cmd.IfVersion)

	case OpPutRepository:
		if cmd.Repository == nil {
			return &ValidationError{Fields: map[string]string{"repository": "required"}}
		}
		r := cmd.Repository
		normalizeRepository(r)
		if err := validateRepository(r, st).err(); err != nil {
			return err
		}
		cur, ok := st.Repositories[r.Name]
		return checkVersion("repository", r.Name, cur.Version, ok, cmd.IfVersion)

	case OpPutDistribution:
		if cmd.Distribution == nil {
			return &ValidationError{Fields: map[string]string{"distribution": "required"}}
		}
		d := cmd.Distribution
		normalizeDistribution(d)
		if err := validateDistribution(d, st).err(); err != nil {
			return err
		}
		cur, ok := st.Distributions[d.Name]
		return checkVersion("distribution", d.Name, cur.Version, ok, cmd.IfVersion)

	case OpDeleteRemote:
		cur, ok := st.Remotes[cmd.Name]
		if err := checkDelete("remote", cmd, cur.Version, ok); err != nil {
			return err
		}
		for _, name := range sortedKeys(st.Repositories) {
			if st.Repositories[name].Remote == cmd.Name {
				return fmt.Errorf("%w: remote %q is used by repository %q", ErrConflict, cmd.Name, name)
			}
		}
		return nil

	case OpDeleteRepository:
		cur, ok := st.Repositories[cmd.Name]
		if err := checkDelete("repository", cmd, cur.Version, ok); err != nil {
			return err
		}
		for _, name := range sortedKeys(st.Distributions) {
			if st.Distributions[name].Repository == cmd.Name {
				return fmt.Errorf("%w: repository %q is used by distribution %q", ErrConflict, cmd.Name, name)
			}
		}
		return nil

	case OpDeleteDistribution:
		cur, ok := st.Distributions[cmd.Name]
		return checkDelete("distribution", cmd, cur.Version, ok)

	case opSeed:
		if len(cmd.Seed) == 0 {
			return &ValidationError{Fields: map[string]string{"seed": "empty"}}
		}
		for i, c := range cmd.Seed {
			if c.Op == opSeed {
				return &ValidationError{Fields: map[string]string{fmt.Sprintf("seed[%d].op", i): "seeds do not nest"}}
			}
		}
		return nil
	}
	return &ValidationError{Fields: map[string]string{"op": fmt.Sprintf("unknown op %q", cmd.Op)}}
}

func checkDelete(kind string, cmd *Command, version uint64, exists bool) error {
	fe := fieldErrors{}
	checkName(fe, "name", cmd.Name)
	if err := fe.err(); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %s %q", ErrNotFound, kind, cmd.Name)
	}
	return checkVersion(kind, cmd.Name, version, exists, cmd.IfVersion)
}
