package main

import (
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/pflag"
)

func TestParseSize(t *testing.T) {
	cases := map[string]int64{
		"1048576": 1 << 20, "200GiB": 200 << 30, "500GB": 500e9, "1.5TiB": 3 << 39,
		"512MiB": 512 << 20, "10 kib": 10 << 10, "2g": 2 << 30, "0": 0,
	}
	for in, want := range cases {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1GiB", "ten", "1e400", "NaN"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestBindEnv(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	dir := fs.String("data-dir", "./d", "")
	listen := fs.String("listen", ":8080", "")
	if err := fs.Parse([]string{"--listen", ":9"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HFCACHE_DATA_DIR": "/srv/cache", "HFCACHE_LISTEN": ":7"}
	if err := bindEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *dir != "/srv/cache" || *listen != ":9" {
		t.Fatalf("data-dir %q listen %q: env must fill unset flags only", *dir, *listen)
	}
}

func TestDefaultBudgetIs80PercentOfFreeSpace(t *testing.T) {
	dir := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := float64(st.Bavail) * float64(st.Bsize)
	for _, d := range []string{dir, dir + "/not/yet/created"} {
		if r := float64(defaultBudget(d, 0)) / free; r < 0.75 || r > 0.85 {
			t.Fatalf("%s: budget is %.2f of the free %0.f bytes, want 0.8", d, r, free)
		}
	}
	// What the cache already holds counts as space it can have, so a
	// restarted node keeps its budget. (Free space moves with every other
	// writer on the machine: compare within a margin.)
	const used = 10 << 30
	if d := defaultBudget(dir, used) - defaultBudget(dir, 0); d < used*8/10-64<<20 || d > used*8/10+64<<20 {
		t.Fatalf("10 GiB already stored moved the budget by %d, want 80%% of it", d)
	}
}

func TestUseGCFlag(t *testing.T) {
	for _, c := range []struct {
		set  bool
		gogc string
		want bool
	}{
		{false, "", true},     // neither: the flag's default
		{false, "100", false}, // GOGC alone: GOGC stays
		{true, "100", true},   // both: the flag wins
		{true, "", true},
	} {
		if got := useGCFlag(c.set, c.gogc); got != c.want {
			t.Errorf("useGCFlag(%v, %q) = %v, want %v", c.set, c.gogc, got, c.want)
		}
	}
}

// Byte-size flags that must be positive name themselves in their errors;
// --cache-size alone may be left empty (the store's default).
func TestSizeFlags(t *testing.T) {
	if b, err := positiveSize("--meta-memory", "64MiB"); err != nil || b != 64<<20 {
		t.Errorf("--meta-memory 64MiB = %d, %v", b, err)
	}
	for in, want := range map[string]string{"0": "--meta-memory must be positive", "lots": "--meta-memory: ", "": "--meta-memory: "} {
		if _, err := positiveSize("--meta-memory", in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--meta-memory %q: %v, want %q", in, err, want)
		}
	}
	if b, err := budgetFor(""); err != nil || b != 0 {
		t.Errorf("--cache-size empty = %d, %v; want the default (0)", b, err)
	}
	if _, err := budgetFor("0"); err == nil || err.Error() != "--cache-size must be positive" {
		t.Errorf("--cache-size 0: %v", err)
	}
}
