package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s program end to end and checks its report:
// two tables, three distinct nodes serving bytes, and no file from the Hub
// in the second pass.
func TestDemo(t *testing.T) {
	jsDir, err := filepath.Abs("../js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@huggingface", "hub")); err != nil {
		t.Skipf("@huggingface/hub is not installed in %s: run `make deps` (make test does it)", jsDir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: run `make deps` (make test does it)")
	}
	bin := t.TempDir()
	for pkg, out := range map[string]string{"../../cmd/hfcache": "hfcache", "../fakehub/cmd/fakehub": "fakehub"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, config{HFBin: filepath.Join(bin, "hfcache"), HubBin: filepath.Join(bin, "fakehub"), JSDir: jsDir}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}

	tables := parseTables(out.String())
	if len(tables) != 2 {
		t.Fatalf("want 2 tables in the output, got %d", len(tables))
	}
	for i, rows := range tables {
		if len(rows) < 9 { // the demo model's 7 files and the dataset's 2
			t.Errorf("pass %d: %d rows, want at least 9", i+1, len(rows))
		}
	}
	servedBy := map[string]bool{}
	for _, r := range tables[0] {
		servedBy[r.servedBy] = true
	}
	if len(servedBy) != 3 {
		t.Errorf("pass 1: served by %v, want 3 distinct nodes", servedBy)
	}
	fromHub := 0
	for _, r := range tables[0] {
		if strings.Contains(r.source, "upstream") {
			fromHub++
		}
	}
	if fromHub == 0 {
		t.Errorf("pass 1: no file from upstream on a cold cache")
	}
	for _, r := range tables[1] {
		if strings.Contains(r.source, "upstream") || (r.source != "disk" && r.source != "peer") {
			t.Errorf("pass 2: %s: source %q, want a hit (disk or peer)", r.file, r.source)
		}
	}
}

type row struct{ file, via, servedBy, source string }

// parseTables splits the demo's output into its tables' rows. Columns are
// read from the right: FILE may contain spaces, the last three may not.
func parseTables(out string) [][]row {
	var tables [][]row
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "REPO ") && strings.HasSuffix(line, "SOURCE") {
			tables = append(tables, nil)
			in = true
			continue
		}
		if !in {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || strings.Contains(line, "files, ") {
			in = false
			continue
		}
		n := len(f)
		tables[len(tables)-1] = append(tables[len(tables)-1], row{file: strings.Join(f[1:n-5], " "), via: f[n-3], servedBy: f[n-2], source: f[n-1]})
	}
	return tables
}
