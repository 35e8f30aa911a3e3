package raftstore

import (
	"errors"
	"strings"
	"testing"
)

// baseState: remote "hf" (version 3), repository "models" on it (4),
// distribution "main" at "/hf" serving it (5), an unused remote "spare" (6).
func baseState(t *testing.T) *state {
	t.Helper()
	st := newState()
	for i, c := range []Command{
		PutRemote(Remote{Name: "hf", Token: "hf_secret"}),
		PutRepository(Repository{Name: "models", Remote: "hf"}),
		PutDistribution(Distribution{Name: "main", BasePath: "/hf/", Repository: "models"}),
		PutRemote(Remote{Name: "spare", URL: "http://mirror.lab:8080/hub/"}),
	} {
		if _, err := st.apply(c, uint64(3+i)); err != nil {
			t.Fatalf("base state: %v", err)
		}
	}
	return st
}

func ptr[T any](v T) *T { return &v }

func TestCheck(t *testing.T) {
	remote := func(f func(*Remote)) Command {
		r := Remote{Name: "r1"}
		f(&r)
		return PutRemote(r)
	}
	repo := func(f func(*Repository)) Command {
		r := Repository{Name: "repo1", Remote: "hf"}
		f(&r)
		return PutRepository(r)
	}
	dist := func(f func(*Distribution)) Command {
		d := Distribution{Name: "d1", BasePath: "/other", Repository: "models"}
		f(&d)
		return PutDistribution(d)
	}
	none := func(*Remote) {}
	tests := []struct {
		name  string
		cmd   Command
		field string // expected *ValidationError field, or ""
		is    error  // expected sentinel, or nil
	}{
		// names
		{"remote ok", remote(none), "", nil},
		{"name empty", remote(func(r *Remote) { r.Name = "" }), "name", nil},
		{"name upper", remote(func(r *Remote) { r.Name = "Hf" }), "name", nil},
		{"name leading dash", remote(func(r *Remote) { r.Name = "-hf" }), "name", nil},
		{"name underscore", remote(func(r *Remote) { r.Name = "h_f" }), "name", nil},
		{"name 63 chars", remote(func(r *Remote) { r.Name = strings.Repeat("a", 63) }), "", nil},
		{"name 64 chars", remote(func(r *Remote) { r.Name = strings.Repeat("a", 64) }), "name", nil},
		{"name digits dashes", remote(func(r *Remote) { r.Name = "0-hub-2" }), "", nil},
		// urls
		{"url http", remote(func(r *Remote) { r.URL = "http://10.0.0.1:8080" }), "", nil},
		{"url ftp", remote(func(r *Remote) { r.URL = "ftp://hub" }), "url", nil},
		{"url no host", remote(func(r *Remote) { r.URL = "https://" }), "url", nil},
		{"url relative", remote(func(r *Remote) { r.URL = "/hub" }), "url", nil},
		{"url garbage", remote(func(r *Remote) { r.URL = "://x" }), "url", nil},
		{"url userinfo", remote(func(r *Remote) { r.URL = "https://u:p@hub" }), "url", nil},
		{"url query", remote(func(r *Remote) { r.URL = "https://hub/?a=1" }), "url", nil},
		{"token with newline", remote(func(r *Remote) { r.Token = "hf_x\nX-Evil: 1" }), "token", nil},
		// enums, durations, globs
		{"policy streamed", remote(func(r *Remote) { r.Policy = PolicyStreamed }), "", nil},
		{"policy immediate", remote(func(r *Remote) { r.Policy = PolicyImmediate }), "", nil},
		{"policy bad", remote(func(r *Remote) { r.Policy = "eager" }), "policy", nil},
		{"xet hidden", remote(func(r *Remote) { r.Xet = XetHidden }), "", nil},
		{"xet bad", remote(func(r *Remote) { r.Xet = "sometimes" }), "xet", nil},
		{"ref_ttl 0", remote(func(r *Remote) { r.RefTTL = "0s" }), "", nil},
		{"ref_ttl 5m", remote(func(r *Remote) { r.RefTTL = "5m" }), "", nil},
		{"ref_ttl bad", remote(func(r *Remote) { r.RefTTL = "soon" }), "ref_ttl", nil},
		{"ref_ttl negative", remote(func(r *Remote) { r.RefTTL = "-1s" }), "ref_ttl", nil},
		{"include ok", remote(func(r *Remote) { r.Include = []string{"meta-llama/*", "gpt2"} }), "", nil},
		{"include bad", remote(func(r *Remote) { r.Include = []string{"ok/*", "bad["} }), "include[1]", nil},
		{"include empty", remote(func(r *Remote) { r.Include = []string{""} }), "include[0]", nil},
		{"exclude bad", remote(func(r *Remote) { r.Exclude = []string{"\\"} }), "exclude[0]", nil},
		{"max_file_size ok", remote(func(r *Remote) { r.MaxFileSize = "50GiB" }), "", nil},
		{"max_file_size bytes", remote(func(r *Remote) { r.MaxFileSize = "1" }), "", nil},
		{"max_file_size decimal", remote(func(r *Remote) { r.MaxFileSize = "1.5 TB" }), "", nil},
		{"max_file_size bad", remote(func(r *Remote) { r.MaxFileSize = "huge" }), "max_file_size", nil},
		{"max_file_size unit", remote(func(r *Remote) { r.MaxFileSize = "5 XB" }), "max_file_size", nil},
		{"max_file_size zero", remote(func(r *Remote) { r.MaxFileSize = "0GiB" }), "max_file_size", nil},
		{"max_file_size rounds to zero", remote(func(r *Remote) { r.MaxFileSize = "0.5" }), "max_file_size", nil},
		{"max_file_size negative", remote(func(r *Remote) { r.MaxFileSize = "-1GiB" }), "max_file_size", nil},
		{"max_file_size too large", remote(func(r *Remote) { r.MaxFileSize = "100EiB" }), "max_file_size", nil},
		{"remote missing", Command{V: 1, Op: OpPutRemote}, "remote", nil},
		// repositories
		{"repo ok", repo(func(*Repository) {}), "", nil},
		{"repo remote missing", repo(func(r *Repository) { r.Remote = "nope" }), "remote", nil},
		{"repo remote empty", repo(func(r *Repository) { r.Remote = "" }), "remote", nil},
		{"repo quota ok", repo(func(r *Repository) { r.Quota = "500GiB" }), "", nil},
		{"repo quota bad", repo(func(r *Repository) { r.Quota = "lots" }), "quota", nil},
		{"repo quota zero", repo(func(r *Repository) { r.Quota = "0" }), "quota", nil},
		{"warm ok", repo(func(r *Repository) {
			r.Warm = []WarmEntry{{Type: "model", Repo: "gpt2"}, {Type: "dataset", Repo: "org/ds", Revision: "v1.0", Include: []string{"*.json"}}}
		}), "", nil},
		{"warm type plural", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "models", Repo: "gpt2"}} }), "warm[0].type", nil},
		{"warm type bad", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "model", Repo: "a"}, {Type: "weights", Repo: "a"}} }), "warm[1].type", nil},
		{"warm kernel", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "kernel", Repo: "kernels-community/x"}} }), "", nil},
		{"warm space", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "space", Repo: "org/app"}} }), "", nil},
		{"warm repo bad", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "model", Repo: "a/b/c"}} }), "warm[0].repo", nil},
		{"warm revision bad", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "model", Repo: "gpt2", Revision: "a b"}} }), "warm[0].revision", nil},
		{"warm include bad", repo(func(r *Repository) { r.Warm = []WarmEntry{{Type: "model", Repo: "gpt2", Include: []string{"["}}} }), "warm[0].include[0]", nil},
		// distributions
		{"dist ok", dist(func(*Distribution) {}), "", nil},
		{"dist root", dist(func(d *Distribution) { d.BasePath = "/" }), "", nil},
		{"dist nested", dist(func(d *Distribution) { d.BasePath = "/hf/v2" }), "", nil},
		{"dist same path as main", dist(func(d *Distribution) { d.BasePath = "/hf/" }), "base_path", nil},
		{"dist reserved api", dist(func(d *Distribution) { d.BasePath = "/api" }), "base_path", nil},
		{"dist reserved datasets", dist(func(d *Distribution) { d.BasePath = "/datasets/x" }), "base_path", nil},
		{"dist reserved spaces", dist(func(d *Distribution) { d.BasePath = "spaces" }), "base_path", nil},
		{"dist reserved kernels", dist(func(d *Distribution) { d.BasePath = "/kernels" }), "base_path", nil},
		{"dist reserved dash", dist(func(d *Distribution) { d.BasePath = "/-/x" }), "base_path", nil},
		{"dist reserved later ok", dist(func(d *Distribution) { d.BasePath = "/x/api" }), "", nil},
		{"dist bad char", dist(func(d *Distribution) { d.BasePath = "/a b" }), "base_path", nil},
		{"dist percent", dist(func(d *Distribution) { d.BasePath = "/a%2f" }), "base_path", nil},
		{"dist dotdot", dist(func(d *Distribution) { d.BasePath = "/a/../b" }), "base_path", nil},
		{"dist empty segment", dist(func(d *Distribution) { d.BasePath = "/a//b" }), "base_path", nil},
		{"dist repository missing", dist(func(d *Distribution) { d.Repository = "nope" }), "repository", nil},
		{"dist access remote", dist(func(d *Distribution) { d.Access = AccessRemote }), "", nil},
		{"dist access bad", dist(func(d *Distribution) { d.Access = "anyone" }), "access", nil},
		// versions
		{"if_version 0 new", remote(none).WithIfVersion(0), "", nil},
		{"if_version 0 exists", PutRemote(Remote{Name: "hf"}).WithIfVersion(0), "", ErrConflict},
		{"if_version match", PutRemote(Remote{Name: "hf"}).WithIfVersion(3), "", nil},
		{"if_version stale", PutRemote(Remote{Name: "hf"}).WithIfVersion(2), "", ErrConflict},
		{"if_version on missing", remote(none).WithIfVersion(7), "", ErrConflict},
		{"repo if_version match", PutRepository(Repository{Name: "models", Remote: "spare"}).WithIfVersion(4), "", nil},
		{"dist if_version stale", PutDistribution(Distribution{Name: "main", BasePath: "/hf", Repository: "models"}).WithIfVersion(4), "", ErrConflict},
		// deletes
		{"delete remote in use", DeleteRemote("hf"), "", ErrConflict},
		{"delete remote unused", DeleteRemote("spare"), "", nil},
		{"delete remote missing", DeleteRemote("nope"), "", ErrNotFound},
		{"delete remote bad name", DeleteRemote("No"), "name", nil},
		{"delete repository in use", DeleteRepository("models"), "", ErrConflict},
		{"delete distribution", DeleteDistribution("main"), "", nil},
		{"delete distribution stale", DeleteDistribution("main").WithIfVersion(1), "", ErrConflict},
		{"delete distribution version", DeleteDistribution("main").WithIfVersion(5), "", nil},
		{"delete distribution missing", DeleteDistribution("x"), "", ErrNotFound},
		// envelope
		{"unknown op", Command{V: 1, Op: "rename"}, "op", nil},
		{"future version", Command{V: 2, Op: OpDeleteDistribution, Name: "main"}, "v", nil},
		{"no version", Command{Op: OpDeleteDistribution, Name: "main"}, "v", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState(t)
			cmd := tt.cmd.clone()
			err := st.check(&cmd)
			var ve *ValidationError
			switch {
			case tt.field != "":
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v, want a ValidationError on %q", err, tt.field)
				}
				if _, ok := ve.Fields[tt.field]; !ok {
					t.Fatalf("fields = %v, want %q", ve.Fields, tt.field)
				}
				if !strings.Contains(err.Error(), tt.field+": ") {
					t.Errorf("Error() = %q does not name %q", err, tt.field)
				}
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("err = %v, want %v", err, tt.is)
				}
			case err != nil:
				t.Fatalf("err = %v, want nil", err)
			}
			// The FSM reaches the same verdict and leaves the state
			// untouched on error.
			before := st.clone()
			_, aerr := st.apply(tt.cmd, 100)
			if (aerr == nil) != (err == nil) {
				t.Fatalf("apply err = %v, check err = %v", aerr, err)
			}
			if aerr != nil && !sameState(before, st) {
				t.Fatalf("state changed by a refused command")
			}
		})
	}
}

func sameState(a, b *state) bool {
	return stateJSON(a) == stateJSON(b)
}

func TestCheckReportsEveryField(t *testing.T) {
	st := baseState(t)
	cmd := PutRemote(Remote{Name: "Bad", URL: "ftp://x", Policy: "x", RefTTL: "x", Include: []string{"["}, MaxFileSize: "0"})
	err := st.check(&cmd)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"name", "url", "policy", "ref_ttl", "include[0]", "max_file_size"} {
		if _, ok := ve.Fields[f]; !ok {
			t.Errorf("missing field %q in %v", f, ve.Fields)
		}
	}
}

func TestNormalize(t *testing.T) {
	st := baseState(t)
	r := st.Remotes["hf"]
	if r.URL != DefaultRemoteURL || r.Policy != PolicyOnDemand || r.RefTTL != DefaultRefTTL || r.Version != 3 {
		t.Errorf("remote defaults: %+v", r)
	}
	if got := st.Remotes["spare"].URL; got != "http://mirror.lab:8080/hub" {
		t.Errorf("url trailing slash kept: %q", got)
	}
	if d := st.Distributions["main"]; d.BasePath != "/hf" || d.Access != AccessCaller {
		t.Errorf("distribution normalised: %+v", d)
	}
	if _, err := st.apply(PutRepository(Repository{Name: "w", Remote: "hf", Warm: []WarmEntry{{Type: "model", Repo: "gpt2"}}}), 9); err != nil {
		t.Fatal(err)
	}
	if rev := st.Repositories["w"].Warm[0].Revision; rev != "main" {
		t.Errorf("warm revision default = %q", rev)
	}
	for in, want := range map[string]string{"": "", "/": "", "//": "", "/hf/": "/hf", "hf": "/hf", "/a/b/": "/a/b", "/v1.2_x-y": "/v1.2_x-y"} {
		got, err := NormalizeBasePath(in)
		if err != nil || got != want {
			t.Errorf("NormalizeBasePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestTokenKeptOnRedactedRoundTrip(t *testing.T) {
	st := baseState(t)
	r := st.Remotes["hf"]
	if !r.TokenSet || r.Token != "hf_secret" {
		t.Fatalf("stored remote: %+v", r)
	}
	red := r.Redacted()
	if red.Token != "" || !red.TokenSet {
		t.Fatalf("Redacted = %+v", red)
	}
	red.RefTTL, red.MaxFileSize = "5m", "50GiB"
	if _, err := st.apply(PutRemote(red), 10); err != nil {
		t.Fatal(err)
	}
	if got := st.Remotes["hf"]; got.Token != "hf_secret" || !got.TokenSet || got.RefTTL != "5m" || got.MaxFileSize != "50GiB" || got.Version != 10 {
		t.Fatalf("after round trip: %+v", got)
	}
	if got := st.Remotes["hf"].Redacted(); got.MaxFileSize != "50GiB" {
		t.Fatalf("after round trip: %+v", got)
	}
	red.TokenSet = false
	if _, err := st.apply(PutRemote(red), 11); err != nil {
		t.Fatal(err)
	}
	if got := st.Remotes["hf"]; got.Token != "" || got.TokenSet {
		t.Fatalf("token not cleared: %+v", got)
	}
	// TokenSet on a new remote with no token means nothing.
	if _, err := st.apply(PutRemote(Remote{Name: "new", TokenSet: true}), 12); err != nil {
		t.Fatal(err)
	}
	if got := st.Remotes["new"]; got.TokenSet {
		t.Fatalf("TokenSet without a token: %+v", got)
	}
}

func TestSeedOnce(t *testing.T) {
	st := newState()
	changed, err := st.apply(seedCommand(DefaultSeed()), 2)
	if err != nil || !changed || !st.Seeded {
		t.Fatalf("seed: changed=%v err=%v seeded=%v", changed, err, st.Seeded)
	}
	if len(st.Remotes) != 1 || len(st.Repositories) != 1 || len(st.Distributions) != 1 {
		t.Fatalf("seeded state: %+v", st)
	}
	if d, _, ok := st.snapshot().DistributionByPath("/gpt2/resolve/main/x"); !ok || d.Name != "default" {
		t.Fatalf("default distribution not at root: %+v", d)
	}
	// A second seed (another leader, a retry) does nothing, even after the
	// admin deleted everything.
	for _, c := range []Command{DeleteDistribution("default"), DeleteRepository("default"), DeleteRemote("default")} {
		if _, err := st.apply(c, 3); err != nil {
			t.Fatal(err)
		}
	}
	if changed, err := st.apply(seedCommand(DefaultSeed()), 4); err != nil || changed || !st.empty() {
		t.Fatalf("reseed: changed=%v err=%v", changed, err)
	}
	// A configured but unseeded cluster is only marked seeded.
	st = newState()
	if _, err := st.apply(PutRemote(Remote{Name: "mine"}), 1); err != nil {
		t.Fatal(err)
	}
	if changed, err := st.apply(seedCommand(DefaultSeed()), 2); err != nil || changed || !st.Seeded || len(st.Remotes) != 1 {
		t.Fatalf("seed over config: changed=%v err=%v %+v", changed, err, st)
	}
	// An invalid seed is refused atomically.
	st = newState()
	bad := []Command{PutRemote(Remote{Name: "ok"}), PutRepository(Repository{Name: "r", Remote: "missing"})}
	if _, err := st.apply(seedCommand(bad), 1); err == nil || !st.empty() || st.Seeded {
		t.Fatalf("bad seed: err=%v state=%+v", err, st)
	}
}
