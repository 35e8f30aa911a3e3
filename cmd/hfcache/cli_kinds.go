package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// changes writes the flags the user gave into an object, leaving every other
// field as it was.
type changes struct {
	fs  *pflag.FlagSet
	obj jsonObject
	err error
}

func (c *changes) put(flag, key string, v any) {
	if c.err == nil && c.fs.Changed(flag) {
		c.err = c.obj.put(key, v)
	}
}

// ---- remote ----

func remoteKind() objectKind {
	return objectKind{
		name:  "remote",
		path:  "remotes",
		short: "Manage remotes: the upstream Hubs content is fetched from",
		long: `A remote is an upstream Hub: its URL, an optional token (write-only: never
shown by the API or this CLI), a fetch policy (on_demand stores files on first
use, streamed passes them through, immediate pre-fetches what repositories
list), how long a branch or tag resolution is trusted, glob patterns of
repo ids it serves, and whether clients speak Xet to the cache (xet native,
the default: chunks are cached and shared across files) or are made to use
plain HTTP (xet hidden).`,
		example: `  hfcache remote create hub --url https://huggingface.co --policy on_demand --ref-ttl 60s
  printf %s "$HF_TOKEN" | hfcache remote update hub --token-stdin
  hfcache remote update hub --include 'my-org/*' --include 'meta-llama/*'
  hfcache remote list -o json`,
		newFlags: func() objectFlags { return &remoteFlags{} },
		columns:  []string{"NAME", "URL", "POLICY", "REF_TTL", "XET", "TOKEN", "INCLUDE", "EXCLUDE", "VERSION"},
		row:      rowOf[remoteView],
		secret:   "token",
	}
}

type remoteFlags struct {
	url, token, policy string
	maxFileSize, xet   string
	tokenStdin         bool
	refTTL             time.Duration
	include, exclude   []string
}

func (f *remoteFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "upstream Hub URL, e.g. https://huggingface.co")
	fs.StringVar(&f.token, "token", "", "upstream Hub token (never shown; prefer --token-stdin: flags show up in ps and shell history)")
	fs.BoolVar(&f.tokenStdin, "token-stdin", false, "read the upstream Hub token from standard input")
	fs.StringVar(&f.policy, "policy", "", "on_demand, streamed or immediate")
	fs.DurationVar(&f.refTTL, "ref-ttl", 0, "how long a branch or tag → commit resolution is trusted, e.g. 60s")
	fs.StringArrayVar(&f.include, "include", nil, "serve only repo ids matching this glob (repeatable; --include '' clears)")
	fs.StringArrayVar(&f.exclude, "exclude", nil, "never serve repo ids matching this glob (repeatable; --exclude '' clears)")
	fs.StringVar(&f.maxFileSize, "max-file-size", "", "refuse files larger than this, e.g. 50GiB ('' clears)")
	fs.StringVar(&f.xet, "xet", "", "native (clients speak Xet to the cache) or hidden (clients use plain HTTP)")
}

func (f *remoteFlags) set(cmd *cobra.Command, fs *pflag.FlagSet, obj jsonObject) error {
	if fs.Changed("token") && fs.Changed("token-stdin") {
		return usageErrorf(cmd, "give --token or --token-stdin, not both")
	}
	c := &changes{fs: fs, obj: obj}
	c.put("url", "url", f.url)
	c.put("policy", "policy", f.policy)
	c.put("include", "include", stringList(f.include))
	c.put("exclude", "exclude", stringList(f.exclude))
	c.put("ref-ttl", "ref_ttl", f.refTTL.String())
	c.put("max-file-size", "max_file_size", f.maxFileSize)
	c.put("xet", "xet", f.xet)
	c.put("token", "token", f.token)
	if c.err == nil && f.tokenStdin {
		tok, err := readSecret(cmd, "--token-stdin")
		if err != nil {
			return err
		}
		c.err = obj.put("token", tok)
	}
	return c.err
}

type remoteView struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	TokenSet bool     `json:"token_set"`
	Policy   string   `json:"policy"`
	RefTTL   string   `json:"ref_ttl"`
	Xet      string   `json:"xet"`
	Include  []string `json:"include"`
	Exclude  []string `json:"exclude"`
	Version  uint64   `json:"version"`
}

func (v remoteView) row() []string {
	return []string{v.Name, v.URL, v.Policy, v.RefTTL, v.Xet, yesNo(v.TokenSet, "set"),
		strings.Join(v.Include, ","), strings.Join(v.Exclude, ","), strconv.FormatUint(v.Version, 10)}
}

// ---- repository ----

func repositoryKind() objectKind {
	return objectKind{
		name:  "repository",
		path:  "repositories",
		short: "Manage repositories: what is cached from a remote",
		long: `A repository caches content from one remote, within an optional byte quota,
and can keep repos warm: --warm TYPE:REPO[@REV][:GLOB,GLOB] names a repo (type
model, dataset, space or kernel), an optional revision (default: main) and
optional file patterns, e.g. model:org/name@main:*.json,*.safetensors.`,
		example: `  hfcache repository create models --remote hub --quota 500GiB \
      --warm 'model:meta-llama/Llama-3.1-8B@main:*.json,*.safetensors'
  hfcache repository update models --quota 1TiB
  hfcache repository update models --warm ''   # stop keeping anything warm`,
		newFlags: func() objectFlags { return &repositoryFlags{} },
		columns:  []string{"NAME", "REMOTE", "QUOTA", "WARM", "VERSION"},
		row:      rowOf[repositoryView],
	}
}

type repositoryFlags struct {
	remote, quota string
	warm          []string
}

func (f *repositoryFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&f.remote, "remote", "", "name of the remote content is fetched from")
	fs.StringVar(&f.quota, "quota", "", "byte quota, e.g. 500GiB or 1.5TB (--quota '' removes it)")
	fs.StringArrayVar(&f.warm, "warm", nil, "keep TYPE:REPO[@REV][:GLOB,GLOB] warm (repeatable; replaces the list; --warm '' clears)")
}

func (f *repositoryFlags) set(cmd *cobra.Command, fs *pflag.FlagSet, obj jsonObject) error {
	c := &changes{fs: fs, obj: obj}
	c.put("remote", "remote", f.remote)
	c.put("quota", "quota", strings.TrimSpace(f.quota)) // the server parses and checks it
	if fs.Changed("warm") {
		warm := []warmSpec{}
		for _, s := range stringList(f.warm) {
			w, err := parseWarm(s)
			if err != nil {
				return usageErrorf(cmd, "--warm %q: %v", s, err)
			}
			warm = append(warm, w)
		}
		c.put("warm", "warm", warm)
	}
	return c.err
}

// warmSpec is a repo a repository keeps warm.
type warmSpec struct {
	Type     string   `json:"type"`
	Repo     string   `json:"repo"`
	Revision string   `json:"revision,omitempty"`
	Include  []string `json:"include,omitempty"`
}

// parseWarm reads TYPE:REPO[@REV][:GLOB,GLOB]. Neither a repo id nor a git
// ref name may contain ':', and a repo id has no '@', so the split is exact.
func parseWarm(s string) (warmSpec, error) {
	const want = "want TYPE:REPO[@REV][:GLOB,GLOB], e.g. model:org/name@main:*.json,*.safetensors"
	typ, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || rest == "" {
		return warmSpec{}, fmt.Errorf("%s", want)
	}
	var w warmSpec
	switch typ {
	case "model", "models":
		w.Type = "model"
	case "dataset", "datasets":
		w.Type = "dataset"
	case "space", "spaces":
		w.Type = "space"
	case "kernel", "kernels":
		w.Type = "kernel"
	default:
		return warmSpec{}, fmt.Errorf("type %q: use model, dataset, space or kernel (%s)", typ, want)
	}
	repoRev, globs, hasGlobs := strings.Cut(rest, ":")
	repo, rev, hasRev := strings.Cut(repoRev, "@")
	switch {
	case repo == "":
		return warmSpec{}, fmt.Errorf("no repo id (%s)", want)
	case hasRev && rev == "":
		return warmSpec{}, fmt.Errorf("empty revision after '@' (%s)", want)
	case hasGlobs && strings.TrimSpace(globs) == "":
		return warmSpec{}, fmt.Errorf("empty file patterns after ':' (%s)", want)
	}
	w.Repo, w.Revision = repo, rev
	if hasGlobs {
		for _, g := range strings.Split(globs, ",") {
			if g = strings.TrimSpace(g); g == "" {
				return warmSpec{}, fmt.Errorf("empty file pattern in %q", globs)
			}
			w.Include = append(w.Include, g)
		}
	}
	return w, nil
}

// String writes the spec back in --warm syntax.
func (w warmSpec) String() string {
	s := w.Type + ":" + w.Repo
	if w.Revision != "" {
		s += "@" + w.Revision
	}
	if len(w.Include) > 0 {
		s += ":" + strings.Join(w.Include, ",")
	}
	return s
}

type repositoryView struct {
	Name    string     `json:"name"`
	Remote  string     `json:"remote"`
	Quota   string     `json:"quota"`
	Warm    []warmSpec `json:"warm"`
	Version uint64     `json:"version"`
}

func (v repositoryView) row() []string {
	warm := make([]string, len(v.Warm))
	for i, w := range v.Warm {
		warm[i] = w.String()
	}
	return []string{v.Name, v.Remote, v.Quota, strings.Join(warm, " "), strconv.FormatUint(v.Version, 10)}
}

// ---- distribution ----

func distributionKind() objectKind {
	return objectKind{
		name:  "distribution",
		path:  "distributions",
		short: "Manage distributions: where clients reach a repository",
		long: `A distribution serves one repository's content under a base path of the client
port ("" serves at the root), with an access mode: caller (each caller's own
token is checked by the Hub for gated and private repos) or remote (the remote's
token serves callers who send none).`,
		example: `  hfcache distribution create hf --base-path /hf --repository models --access caller
  HF_ENDPOINT=http://cache:8080/hf hf download gpt2`,
		newFlags: func() objectFlags { return &distributionFlags{} },
		columns:  []string{"NAME", "BASE_PATH", "REPOSITORY", "ACCESS", "VERSION"},
		row:      rowOf[distributionView],
	}
}

type distributionFlags struct{ basePath, repository, access string }

func (f *distributionFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&f.basePath, "base-path", "", `URL path prefix on the client port, e.g. /hf ("" serves at the root)`)
	fs.StringVar(&f.repository, "repository", "", "name of the repository served")
	fs.StringVar(&f.access, "access", "", "caller or remote")
}

func (f *distributionFlags) set(_ *cobra.Command, fs *pflag.FlagSet, obj jsonObject) error {
	c := &changes{fs: fs, obj: obj}
	c.put("base-path", "base_path", f.basePath)
	c.put("repository", "repository", f.repository)
	c.put("access", "access", f.access)
	return c.err
}

type distributionView struct {
	Name       string `json:"name"`
	BasePath   string `json:"base_path"`
	Repository string `json:"repository"`
	Access     string `json:"access"`
	Version    uint64 `json:"version"`
}

func (v distributionView) row() []string {
	base := v.BasePath
	if base == "" {
		base = "(root)"
	}
	return []string{v.Name, base, v.Repository, v.Access, strconv.FormatUint(v.Version, 10)}
}
