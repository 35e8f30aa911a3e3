package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary serve P2's reference when the bench under
// test starts it as a child (startRef runs os.Executable()).
func TestMain(m *testing.M) {
	serveRefFromEnv()
	os.Exit(m.Run())
}

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
	// P2's second generator (make deps installs it).
	wrkBin, _ := exec.LookPath("wrk")
	if wrkBin == "" {
		t.Log("wrk not installed: P2 runs under the bench's own generator only")
	}
	// XET: test/js/xetbench.mjs with the pinned @huggingface/hub (make deps).
	nodeBin, _ := exec.LookPath("node")
	jsDir, _ := filepath.Abs("../js")
	withXet := jsReady(nodeBin, jsDir) == ""
	if !withXet {
		t.Logf("XET not run: %s", jsReady(nodeBin, jsDir))
	}
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	rep, err := Run(Config{HFBin: hfBin, HubBin: hubBin, NginxBin: ngBin, WrkBin: wrkBin, Quick: true, WorkDir: t.TempDir(), JSONPath: jsonPath, Out: &out,
		NodeBin: nodeBin, JSDir: jsDir})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	// Every phase measured hfcache (column A) with a positive value.
	seen := map[string]bool{}
	for _, m := range rep.Metrics {
		if m.Phase == "XET" {
			// Both modes ran, cold and warm; no timing is asserted (a
			// server CPU delta may round to 0), only that the client got
			// the file's bytes.
			seen[m.Phase] = true
			if m.AMed == nil || m.BMed == nil {
				t.Errorf("XET %q: xet %v plain %v", m.Name, m.AVals, m.BVals)
				continue
			}
			if strings.HasSuffix(m.Name, "bytes match (sha256 = file's)") && (*m.AMed != 1 || *m.BMed != 1) {
				t.Errorf("XET %q: xet %v plain %v, want 1", m.Name, m.AVals, m.BVals)
			}
			if strings.HasPrefix(m.Name, "warm ") && strings.Contains(m.Name, "upstream bytes (fake Hub") && (*m.AMed != 0 || *m.BMed != 0) {
				t.Errorf("XET %q: xet %v plain %v: a warm download went upstream", m.Name, m.AVals, m.BVals)
			}
			if m.Unit == "MiB/s" && (*m.AMed <= 0 || *m.BMed <= 0) {
				t.Errorf("XET %q: xet %v plain %v", m.Name, m.AVals, m.BVals)
			}
			continue
		}
		if len(m.AVals) == 0 || m.AMed == nil {
			t.Errorf("%s %q: no hfcache value", m.Phase, m.Name)
			continue
		}
		seen[m.Phase] = true
		// CPU comes from /proc's 10 ms ticks: a quick run's small files can
		// cost a fast machine less than one (0). Every other measure is
		// positive.
		cpu := strings.Contains(m.Name, "CPU")
		if m.Unit != "fraction" && m.Unit != "x" && (*m.AMed < 0 || *m.AMed == 0 && !cpu) {
			t.Errorf("%s %q: hfcache value %v", m.Phase, m.Name, *m.AMed)
		}
		if ngBin != "" && m.B == "nginx" && m.BMed == nil {
			t.Errorf("%s %q: nginx installed but no nginx value", m.Phase, m.Name)
		}
	}
	phases := []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7"}
	if withXet {
		phases = append(phases, "XET")
	}
	for _, p := range phases {
		if !seen[p] {
			t.Errorf("phase %s reported nothing", p)
		}
	}
	// The fake CDN's byte count reached the bench: every cold fill of
	// hfcache fetched its file from upstream exactly once.
	for _, m := range rep.Metrics {
		if (m.Phase == "P3" || m.Phase == "P4") && strings.Contains(m.Name, "upstream bytes / file size") &&
			(m.AMed == nil || *m.AMed < 1 || *m.AMed > 1.01) {
			t.Errorf("%s %q: hfcache %v, want 1", m.Phase, m.Name, m.AVals)
		}
	}
	// The load generator really ran requests.
	for _, m := range rep.Metrics {
		if m.Phase == "P2" && m.Unit == "req/s" && (m.AMed == nil || *m.AMed < 10) {
			t.Errorf("P2 req/s = %v", m.AMed)
		}
	}
	// Every target of the issue sits on its row, and is judged wherever
	// both of the row's columns were measured.
	targets := map[string]int{"P1": 4, "P2": 2, "P3": 1, "P4": 2, "P5": 1, "P6": 1, "P7": 1}
	if wrkBin != "" {
		targets["P2"] += 2 // the same two under wrk
	}
	for _, m := range rep.Metrics {
		if m.Target == nil {
			continue
		}
		targets[m.Phase]--
		judgeable := m.Target.Of == "A" || (m.Target.Of == "A/B" && m.Ratio != nil) || (m.Target.Of == "A-B" && m.BMed != nil)
		if judgeable != (m.Met != nil) {
			t.Errorf("%s %q: target %v, met %v", m.Phase, m.Name, m.Target, m.Met)
		}
	}
	for p, n := range targets {
		if n != 0 {
			t.Errorf("%s: %d targets not found on its rows", p, n)
		}
	}
	if !strings.Contains(out.String(), "targets met: ") {
		t.Error("the table does not say how many targets were met")
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

func TestTargetJudged(t *testing.T) {
	v := func(x float64) []float64 { return []float64{x} }
	cases := []struct {
		m    Metric
		want *bool
	}{
		{Metric{AVals: v(2.2), BVals: v(2), Target: &Target{"A/B", ">=", 1.1}}, ptr(true)},
		{Metric{AVals: v(2.1), BVals: v(2), Target: &Target{"A/B", ">=", 1.1}}, ptr(false)},
		{Metric{AVals: v(2.1), Target: &Target{"A/B", ">=", 1.1}}, nil}, // no B column
		{Metric{AVals: v(0.9), BVals: v(1), Target: &Target{"A/B", "<=", 1}}, ptr(true)},
		{Metric{AVals: v(72), Target: &Target{"A", "<=", 72}}, ptr(true)},
		{Metric{AVals: v(3.9), Target: &Target{"A", ">=", 4}}, ptr(false)},
		{Metric{AVals: v(6.9), BVals: v(1.8), Target: &Target{"A-B", "<=", 5}}, ptr(false)},
		{Metric{AVals: v(4.9), BVals: v(1.8), Target: &Target{"A-B", "<=", 5}}, ptr(true)},
		{Metric{AVals: v(1)}, nil}, // no target
	}
	for i, c := range cases {
		r := Report{Metrics: []*Metric{&c.m}}
		r.finish()
		got := c.m.Met
		if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
			t.Errorf("case %d (%v): met %v, want %v", i, c.m.Target, fmtBool(got), fmtBool(c.want))
		}
	}
}

func ptr(b bool) *bool { return &b }

func fmtBool(b *bool) string {
	if b == nil {
		return "nil"
	}
	return strconv.FormatBool(*b)
}
