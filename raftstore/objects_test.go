package raftstore

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestDistributionByPath(t *testing.T) {
	s := Snapshot{Distributions: map[string]Distribution{
		"root":   {Name: "root", BasePath: ""},
		"hf":     {Name: "hf", BasePath: "/hf"},
		"hfdeep": {Name: "hfdeep", BasePath: "/hf/v2"},
	}}
	tests := []struct{ path, name, rest string }{
		{"/gpt2/resolve/main/config.json", "root", "/gpt2/resolve/main/config.json"},
		{"/hf", "hf", ""},
		{"/hf/", "hf", "/"},
		{"/hf/gpt2/resolve/main/x", "hf", "/gpt2/resolve/main/x"},
		{"/hfx/gpt2", "root", "/hfx/gpt2"},
		{"/hf/v2/api/models/gpt2", "hfdeep", "/api/models/gpt2"},
		{"/hf/v20", "hf", "/v20"},
		{"", "root", ""},
	}
	for _, tt := range tests {
		d, rest, ok := s.DistributionByPath(tt.path)
		if !ok || d.Name != tt.name || rest != tt.rest {
			t.Errorf("DistributionByPath(%q) = %q, %q, %v; want %q, %q", tt.path, d.Name, rest, ok, tt.name, tt.rest)
		}
	}
	delete(s.Distributions, "root")
	if d, _, ok := s.DistributionByPath("/other"); ok {
		t.Errorf("no root distribution, yet matched %q", d.Name)
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1048576": 1048576, "500GiB": 500 << 30, "1.5TB": 1_500_000_000_000, "10 MB": 10_000_000,
		"1kib": 1024, "2Gi": 2 << 30, "3G": 3_000_000_000, "7b": 7, "1.5KiB": 1536, "0.5B": 0, " 8EiB ": -1,
	}
	for in, want := range good {
		got, err := ParseBytes(in)
		if want == -1 { // 8 EiB overflows int64
			if err == nil {
				t.Errorf("ParseBytes(%q) = %d, want overflow error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.2.3", "1 XB", "1e3", "abc", ".", "1 0"} {
		if n, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want error", in, n)
		}
	}
}

func TestSecretsStayOutOfLogsAndAPI(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := Remote{Name: "hf", Token: "hf_supersecret"}
	cmd := PutRemote(r)
	log.Info("x", "remote", r, "command", cmd)
	if strings.Contains(buf.String(), "supersecret") {
		t.Fatalf("token logged: %s", buf.String())
	}
	snap := Snapshot{Remotes: map[string]Remote{"hf": r}}.Redacted()
	if snap.Remotes["hf"].Token != "" || !snap.Remotes["hf"].TokenSet || r.Token == "" {
		t.Fatalf("Snapshot.Redacted: %+v (original %+v)", snap.Remotes["hf"], r)
	}
	b, _ := json.Marshal(r.Redacted())
	if strings.Contains(string(b), "supersecret") || !strings.Contains(string(b), `"token_set":true`) {
		t.Fatalf("redacted JSON: %s", b)
	}
}
