package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestQuick builds hfcache and the fake Hub, then runs the whole bench in
// -quick mode: every phase on the hfcache side, the load generator end to
// end, and the nginx columns too when nginx is installed.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts processes")
	}
	bin := t.TempDir()
	hfBin, hubBin := filepath.Join(bin, "hfcache"), filepath.Join(bin, "fakehub")
	for out, pkg := range map[string]string{hfBin: "github.com/hfcache/hfcache/cmd/hfcache", hubBin: "github.com/hfcache/hfcache/test/fakehub/cmd/fakehub"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("go build %s: %v", pkg, err)
		}
	}
	ngBin, _ := exec.LookPath("nginx")
	if ngBin == "" {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			ngBin = "/usr/sbin/nginx"
		}
	}
	if ngBin == "" {
		t.Log("nginx not installed: the nginx columns stay empty")
	}
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	rep, err := Run(Config{HFBin: hfBin, HubBin: hubBin, NginxBin: ngBin, Quick: true, WorkDir: t.TempDir(), JSONPath: jsonPath, Out: &out})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	// Every phase measured hfcache (column A) with a positive value.
	seen := map[string]bool{}
	for _, m := range rep.Metrics {
		if len(m.AVals) == 0 || m.AMed == nil {
			t.Errorf("%s %q: no hfcache value", m.Phase, m.Name)
			continue
		}
		seen[m.Phase] = true
		if m.Unit != "fraction" && m.Unit != "x" && *m.AMed <= 0 {
			t.Errorf("%s %q: hfcache value %v", m.Phase, m.Name, *m.AMed)
		}
		if ngBin != "" && m.B == "nginx" && m.BMed == nil {
			t.Errorf("%s %q: nginx installed but no nginx value", m.Phase, m.Name)
		}
	}
	for _, p := range []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7"} {
		if !seen[p] {
			t.Errorf("phase %s reported nothing", p)
		}
	}
	// The load generator really ran requests.
	for _, m := range rep.Metrics {
		if m.Phase == "P2" && m.Unit == "req/s" && (m.AMed == nil || *m.AMed < 10) {
			t.Errorf("P2 req/s = %v", m.AMed)
		}
	}
	var back Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Metrics) != len(rep.Metrics) {
		t.Fatalf("JSON report: %v (%d metrics)", err, len(back.Metrics))
	}
}
