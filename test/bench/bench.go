package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/hfcache/hfcache/test/procs"
)

// Config is one bench run.
type Config struct {
	HFBin    string // hfcache binary
	HubBin   string // fakehub binary
	NginxBin string // "" skips every nginx column
	WrkBin   string // P2's second load generator ("" skips its rows)
	Quick    bool   // tiny sizes, one round: a smoke run
	Rounds   int
	Rate     int64 // P3: the fake Hub's per-connection cap, bytes/s (0 = default)
	WorkDir  string
	JSONPath string
	Out      io.Writer
	Only     string // comma-separated phases to run (P1..P7, XET); "" = all
	NodeBin  string // node, for XET ("" = skip XET)
	JSDir    string // test/js: xetbench.mjs and node_modules
	XetSize  int64  // XET: the Xet file's size (0 = 1 GiB; 4 MiB with Quick)
	P3Dir    string // P3: a fresh directory is made here for the tmpfs row ("" = no tmpfs row)
}

// sizes are the file sizes and durations of a run.
type sizes struct {
	Big, W16, Small, P3, P4, P7 int64
	Rate                        int64
	P1Dur, P2Dur                time.Duration
	P1Clients, P2Clients        int
	P4Clients                   int
	Xet                         int64 // XET: the Xet file's size
}

// fullSizes: P3's R is 64 MiB/s so that 4 R (the target) stays below what
// this 2-core VM can write to fresh pages at all (dd: 310-490 MB/s, on
// tmpfs as on the disk; see docs/PERFORMANCE.md). At 128 MiB/s, 4 R is
// more than any cache that keeps the bytes could store.
func fullSizes() sizes {
	return sizes{Big: 1 << 30, W16: 16 << 20, Small: 4 << 10, P3: 1 << 30, P4: 64 << 20, P7: 16 << 20,
		Rate: 64 << 20, P1Dur: 2 * time.Second, P2Dur: 5 * time.Second, P1Clients: 8, P2Clients: 64, P4Clients: 64, Xet: 1 << 30}
}

func quickSizes() sizes {
	return sizes{Big: 8 << 20, W16: 1 << 20, Small: 4 << 10, P3: 4 << 20, P4: 4 << 20, P7: 1 << 20,
		Rate: 16 << 20, P1Dur: 300 * time.Millisecond, P2Dur: 500 * time.Millisecond, P1Clients: 8, P2Clients: 64, P4Clients: 64, Xet: 4 << 20}
}

// Metric is one row of the table: per-round values of two columns.
type Metric struct {
	Phase  string    `json:"phase"`
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Better string    `json:"better"` // "higher" or "lower"
	A      string    `json:"a"`      // column labels
	B      string    `json:"b"`
	AVals  []float64 `json:"a_values"`
	BVals  []float64 `json:"b_values"`
	AMed   *float64  `json:"a_median"`
	BMed   *float64  `json:"b_median"`
	Ratio  *float64  `json:"ratio_a_over_b"`
	Note   string    `json:"note,omitempty"`
	// Target is the target for this row, if it has one; Met says
	// whether this run's medians meet it (nil when a column is missing).
	Target *Target `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

// Target is a row's target: the ratio A/B, the median of A, or A - B
// (Of: "A/B", "A", "A-B"), at least or at most (Op: ">=", "<=") Value.
type Target struct {
	Of    string  `json:"of"`
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

func (t Target) String() string {
	op := "≥"
	if t.Op == "<=" {
		op = "≤"
	}
	return fmt.Sprintf("%s %s %g", t.Of, op, t.Value)
}

// want sets m's target (the same at every round).
func (m *Metric) want(of, op string, v float64) *Metric {
	m.Target = &Target{Of: of, Op: op, Value: v}
	return m
}

// judge sets m.Met from its medians and target.
func (m *Metric) judge() {
	m.Met = nil
	if m.Target == nil || m.AMed == nil {
		return
	}
	var x float64
	switch m.Target.Of {
	case "A":
		x = *m.AMed
	case "A/B":
		if m.Ratio == nil {
			return
		}
		x = *m.Ratio
	case "A-B":
		if m.BMed == nil {
			return
		}
		x = *m.AMed - *m.BMed
	default:
		return
	}
	met := x >= m.Target.Value
	if m.Target.Op == "<=" {
		met = x <= m.Target.Value
	}
	m.Met = &met
}

// Report is the whole run.
type Report struct {
	Date    string    `json:"date"`
	NProc   int       `json:"nproc"`
	CPU     string    `json:"cpu"`
	Kernel  string    `json:"kernel"`
	Quick   bool      `json:"quick"`
	Rounds  int       `json:"rounds"`
	Sizes   sizes     `json:"sizes"`
	Nginx   bool      `json:"nginx"`
	Metrics []*Metric `json:"metrics"`
	XetRuns []XetRun  `json:"xet_runs,omitempty"` // XET: every download's raw numbers
	Missing []string  `json:"missing,omitempty"`
	Elapsed string    `json:"elapsed"`
}

func (r *Report) metric(phase, name, unit, better, a, b string) *Metric {
	for _, m := range r.Metrics {
		if m.Phase == phase && m.Name == name {
			return m
		}
	}
	m := &Metric{Phase: phase, Name: name, Unit: unit, Better: better, A: a, B: b}
	r.Metrics = append(r.Metrics, m)
	return m
}

func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &m
}

func (r *Report) finish() {
	for _, m := range r.Metrics {
		m.AMed, m.BMed = median(m.AVals), median(m.BVals)
		m.Ratio = nil
		if m.AMed != nil && m.BMed != nil && *m.BMed != 0 {
			x := *m.AMed / *m.BMed
			m.Ratio = &x
		}
		m.judge()
	}
}

// Table writes the report as a text table.
func (r *Report) Table(w io.Writer) {
	fmt.Fprintf(w, "hfcache bench %s — %d cores, %s, rounds=%d quick=%v nginx=%v (%s)\n", r.Date, r.NProc, r.CPU, r.Rounds, r.Quick, r.Nginx, r.Elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tmetric\tunit\tA\tmedian A\tB\tmedian B\tA/B\tbetter\ttarget\tmet")
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		v := *p
		switch {
		case v == 0:
			return "0"
		case v >= 100:
			return fmt.Sprintf("%.0f", v)
		case v >= 10:
			return fmt.Sprintf("%.1f", v)
		default:
			return fmt.Sprintf("%.3g", v)
		}
	}
	var met, judged int
	var missed []string
	for _, m := range r.Metrics {
		target, ok := "", ""
		if m.Target != nil {
			target, ok = m.Target.String(), "-"
		}
		if m.Met != nil {
			judged++
			ok = "yes"
			if *m.Met {
				met++
			} else {
				ok = "NO"
				missed = append(missed, m.Phase+" "+m.Name)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Phase, m.Name, m.Unit, m.A, f(m.AMed), m.B, f(m.BMed), f(m.Ratio), m.Better, target, ok)
	}
	tw.Flush()
	if judged > 0 {
		fmt.Fprintf(w, "targets met: %d of %d judged", met, judged)
		if r.Quick {
			fmt.Fprint(w, " (a -quick run: sizes too small for the targets to mean anything)")
		}
		fmt.Fprintln(w)
		for _, s := range missed {
			fmt.Fprintf(w, "missed: %s\n", s)
		}
	}
	for _, s := range r.Missing {
		fmt.Fprintf(w, "missing: %s\n", s)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

const (
	bigPath   = "/fakehub/big-model/resolve/main/big.bin"
	benchRepo = "/fakehub/bench-model/resolve/main/"
	mib       = float64(1 << 20)
	gib       = float64(1 << 30)
)

// bench holds the running processes.
type bench struct {
	cfg     Config
	sz      sizes
	rep     *Report
	hubA    *hub // unthrottled
	hubB    *hub // capped at sz.Rate per connection (P3)
	hubX    *hub // serves the Xet file (XET)
	hfA     *hfNode
	hfB     *hfNode
	ng      *nginxProc
	cluster []*hfNode
	client  *http.Client
	mu      sync.Mutex
	closers []func()
}

func (b *bench) onClose(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closers = append(b.closers, f)
}

func (b *bench) close() {
	b.client.CloseIdleConnections()
	b.mu.Lock()
	cs := b.closers
	b.closers = nil
	b.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// wants reports whether the run includes phase (Only).
func (c Config) wants(phase string) bool {
	if c.Only == "" {
		return true
	}
	for _, p := range strings.Split(c.Only, ",") {
		if strings.EqualFold(strings.TrimSpace(p), phase) {
			return true
		}
	}
	return false
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Out, "# "+format+"\n", args...)
}

// Run runs the bench and returns its report (also written to cfg.JSONPath).
func Run(cfg Config) (*Report, error) {
	t0 := time.Now()
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	sz := fullSizes()
	if cfg.Quick {
		sz = quickSizes()
		if cfg.Rounds == 0 {
			cfg.Rounds = 1
		}
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Rate > 0 {
		sz.Rate = cfg.Rate
	}
	if cfg.XetSize > 0 {
		sz.Xet = cfg.XetSize
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "hfcache-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), NProc: runtime.NumCPU(), CPU: cpuModel(), Kernel: kernel(),
		Quick: cfg.Quick, Rounds: cfg.Rounds, Sizes: sz, Nginx: cfg.NginxBin != ""}
	if cfg.NginxBin == "" {
		rep.Missing = append(rep.Missing, "nginx not given: every nginx column is empty")
	}
	if cfg.WrkBin == "" && cfg.wants("P2") {
		rep.Missing = append(rep.Missing, "wrk not given: P2 ran under the bench's own load generator only")
	}
	b := &bench{cfg: cfg, sz: sz, rep: rep, client: newClient(256, false)}
	b.client.Timeout = 10 * time.Minute
	defer b.close()
	if err := b.start(); err != nil {
		return rep, err
	}
	phases := []struct {
		name string
		run  func() error
	}{
		{"P4", b.p4}, {"P5", b.p5}, {"P1", b.p1}, {"P6", b.p6}, {"P2", b.p2}, {"P3", b.p3}, {"P7", b.p7}, {"XET", b.pXet},
	}
	var errs []error
	for _, p := range phases {
		if !b.cfg.wants(p.name) {
			continue
		}
		b.logf("%s ...", p.name)
		pt := time.Now()
		if err := p.run(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			rep.Missing = append(rep.Missing, fmt.Sprintf("%s failed: %v", p.name, err))
		}
		b.logf("%s done in %.1fs", p.name, time.Since(pt).Seconds())
		if p.name == "P5" {
			b.stopCluster()
		}
	}
	rep.Elapsed = time.Since(t0).Round(time.Second).String()
	rep.finish()
	rep.Table(cfg.Out)
	if cfg.JSONPath != "" {
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(cfg.JSONPath, append(js, '\n'), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

func (b *bench) fileName(kind string, round int) string {
	return fmt.Sprintf("%s-r%d.bin", kind, round)
}

func (b *bench) start() error {
	sz := b.sz
	filesA := []string{fmt.Sprintf("w16.bin:%d", sz.W16), fmt.Sprintf("small.bin:%d", sz.Small)}
	var filesB []string
	for r := range b.cfg.Rounds {
		for _, k := range []string{"p4-hf", "p4-ng"} {
			filesA = append(filesA, fmt.Sprintf("%s:%d", b.fileName(k, r), sz.P4))
		}
		for i := range p7PerRound {
			for _, k := range []string{"p7-hf", "p7-ng", "p7-dir"} {
				filesA = append(filesA, fmt.Sprintf("%s:%d", b.fileName(k, r*p7PerRound+i), sz.P7))
			}
		}
		for _, k := range []string{"p3-hf", "p3-ng"} {
			filesB = append(filesB, fmt.Sprintf("%s:%d", b.fileName(k, r), sz.P3))
		}
	}
	b.logf("starting fake Hubs (hashing generated files)")
	var wg sync.WaitGroup
	var errA, errB, errX error
	wg.Add(2)
	go func() { defer wg.Done(); b.hubA, errA = startHub(b.cfg.HubBin, sz.Big, 0, filesA) }()
	go func() { defer wg.Done(); b.hubB, errB = startHub(b.cfg.HubBin, 0, sz.Rate, filesB) }()
	if b.cfg.wants("XET") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.hubX, errX = startHub(b.cfg.HubBin, 0, 0, nil, "-big-xet", strconv.FormatInt(sz.Xet, 10))
		}()
	}
	wg.Wait()
	if b.hubA != nil {
		b.onClose(b.hubA.Close)
	}
	if b.hubB != nil {
		b.onClose(b.hubB.Close)
	}
	if b.hubX != nil {
		b.onClose(b.hubX.Close)
	}
	if err := errors.Join(errA, errB, errX); err != nil {
		return err
	}
	var err error
	if b.hfA, err = startHF(b.cfg.HFBin, b.hubA.URL, filepath.Join(b.cfg.WorkDir, "hfA"), "--node-name", "single"); err != nil {
		return err
	}
	b.onClose(func() { b.hfA.stop() })
	if b.hfB, err = startHF(b.cfg.HFBin, b.hubB.URL, filepath.Join(b.cfg.WorkDir, "hfB"), "--node-name", "single-capped"); err != nil {
		return err
	}
	b.onClose(func() { b.hfB.stop() })
	if b.cfg.NginxBin != "" {
		if b.ng, err = startNginx(b.cfg.NginxBin, filepath.Join(b.cfg.WorkDir, "nginx"), []string{b.hubA.URL, b.hubB.URL}); err != nil {
			return err
		}
		b.onClose(b.ng.stop)
	}
	if b.cfg.wants("P4") || b.cfg.wants("P5") {
		if err := b.startCluster(); err != nil {
			return err
		}
	}
	return nil
}

const clusterSecret = "hfcache-bench-secret-0123456789abcdef"

func (b *bench) startCluster() error {
	for i := range 3 {
		args := []string{"--node-name", fmt.Sprintf("c%d", i), "--cluster-secret", clusterSecret}
		if i > 0 {
			args = append(args, "--join", b.cluster[0].Gossip)
		}
		n, err := startHF(b.cfg.HFBin, b.hubA.URL, filepath.Join(b.cfg.WorkDir, fmt.Sprintf("c%d", i)), args...)
		if err != nil {
			return err
		}
		b.cluster = append(b.cluster, n)
		b.onClose(n.stop)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, n := range b.cluster {
			if procs.AliveMembers(http.DefaultClient, n.Admin) != 3 {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not see 3 alive members within 60s")
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func (b *bench) stopCluster() {
	var wg sync.WaitGroup
	for _, n := range b.cluster {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()
}

// probe GETs the first byte of url and returns the response headers.
func (b *bench) probe(url string) (http.Header, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", "bytes=0-0")
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return resp.Header, fmt.Errorf("probe %s: %s", url, resp.Status)
	}
	return resp.Header, nil
}

// warm downloads url once and waits until the server serves it from its
// cache: X-Hfcache-Source: disk, or nginx's X-Cache-Status: HIT.
func (b *bench) warm(url string) error {
	if _, err := get(nilCtx(), b.client, url); err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		h, err := b.probe(url)
		if err != nil {
			return err
		}
		if h.Get("X-Hfcache-Source") == "disk" || h.Get("X-Cache-Status") == "HIT" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served from cache within 3m (headers %v)", url, h)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// server is one side of a comparison.
type server struct {
	name string
	url  string
	pids func() []int
}

func (b *bench) servers(hubIdx int) []server {
	out := []server{{name: "hfcache", url: b.hfA.URL, pids: func() []int { return []int{b.hfA.Pid()} }}}
	if hubIdx == 1 {
		out[0].url = b.hfB.URL
		out[0].pids = func() []int { return []int{b.hfB.Pid()} }
	}
	if b.ng != nil {
		out = append(out, server{name: "nginx", url: b.ng.URLs[hubIdx], pids: b.ng.pids})
	}
	return out
}

// add appends a value to column A (hfcache) or B (nginx) of a metric.
func add(m *Metric, srv string, v float64) {
	if srv == "hfcache" {
		m.AVals = append(m.AVals, v)
	} else {
		m.BVals = append(m.BVals, v)
	}
}

// ordered rotates which server goes first, round by round (two servers
// alternate).
func ordered(s []server, round int) []server {
	if len(s) < 2 {
		return s
	}
	k := round % len(s)
	return append(append([]server(nil), s[k:]...), s[:k]...)
}

// P1: warm hits, 8 concurrent clients, of a 16 MiB file (back to back for
// a fixed time) and of the 1 GiB file (each client once).
func (b *bench) p1() error {
	srvs := b.servers(0)
	for _, s := range srvs {
		for _, p := range []string{benchRepo + "w16.bin", bigPath} {
			if err := b.warm(s.url + p); err != nil {
				return err
			}
		}
	}
	r := b.rep
	for round := range b.cfg.Rounds {
		for _, s := range ordered(srvs, round) {
			c0 := cpuSeconds(s.pids())
			res, err := loadFor(b.client, s.url+benchRepo+"w16.bin", b.sz.P1Clients, b.sz.P1Dur)
			if err != nil {
				return err
			}
			cpu := cpuSeconds(s.pids()) - c0
			add(r.metric("P1", "warm 16MiB, 8 clients: throughput", "MiB/s", "higher", "hfcache", "nginx").want("A/B", ">=", 1.1), s.name, float64(res.bytes)/mib/res.elapsed.Seconds())
			add(r.metric("P1", "warm 16MiB: server CPU per GiB", "cpu-s/GiB", "lower", "hfcache", "nginx").want("A/B", "<=", 1), s.name, cpu/(float64(res.bytes)/gib))

			c0 = cpuSeconds(s.pids())
			fs, el, err := parallelOnce(b.client, []string{s.url + bigPath}, b.sz.P1Clients)
			if err != nil {
				return err
			}
			cpu = cpuSeconds(s.pids()) - c0
			var n int64
			for _, f := range fs {
				n += f.bytes
			}
			add(r.metric("P1", "warm 1GiB, 8 clients: throughput", "MiB/s", "higher", "hfcache", "nginx").want("A/B", ">=", 1.1), s.name, float64(n)/mib/el.Seconds())
			add(r.metric("P1", "warm 1GiB: server CPU per GiB", "cpu-s/GiB", "lower", "hfcache", "nginx").want("A/B", "<=", 1), s.name, cpu/(float64(n)/gib))
		}
	}
	return nil
}

// P6: peak RSS of a freshly restarted hfcache while 8 clients stream the
// warm 1 GiB file; nginx: peak of the summed VmRSS of master and workers,
// sampled during the same load.
func (b *bench) p6() error {
	// Restart the single node on its data directory so VmHWM covers only this load.
	b.hfA.stop()
	n, err := startHF(b.cfg.HFBin, b.hubA.URL, b.hfA.dir, b.hfA.args...)
	if err != nil {
		return err
	}
	b.hfA = n
	b.onClose(n.stop)
	srvs := b.servers(0)
	for _, s := range srvs {
		if err := b.warm(s.url + bigPath); err != nil {
			return err
		}
	}
	r := b.rep
	// One round: a peak is not noisy, and each round streams 8 GiB per server.
	for round := range 1 {
		for _, s := range ordered(srvs, round) {
			var peak atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				for {
					var sum int64
					for _, p := range s.pids() {
						sum += statusKB(p, "VmRSS")
					}
					if sum > peak.Load() {
						peak.Store(sum)
					}
					select {
					case <-stop:
						return
					case <-t.C:
					}
				}
			}()
			_, _, err := parallelOnce(b.client, []string{s.url + bigPath}, b.sz.P1Clients)
			close(stop)
			<-done
			if err != nil {
				return err
			}
			if s.name == "hfcache" {
				// The target: 64 MiB + 1 MiB per connection.
				add(r.metric("P6", "VmHWM since restart, 8 clients stream 1GiB", "MiB", "lower", "hfcache", "n/a").want("A", "<=", 64+float64(b.sz.P1Clients)), s.name, float64(statusKB(b.hfA.Pid(), "VmHWM"))/1024)
				add(r.metric("P6", "peak sampled VmRSS, 8 clients x 1GiB (nginx: master+workers)", "MiB", "lower", "hfcache", "nginx"), s.name, float64(peak.Load())/1024)
			} else {
				add(r.metric("P6", "peak sampled VmRSS, 8 clients x 1GiB (nginx: master+workers)", "MiB", "lower", "hfcache", "nginx"), s.name, float64(peak.Load())/1024)
			}
		}
	}
	return nil
}

// P4: 64 concurrent cold requests for one blob: spread over the 3-node
// cluster (hfcache) or all to the one nginx.
func (b *bench) p4() error {
	r := b.rep
	type side struct {
		name string
		urls []string
		kind string
	}
	var sides []side
	var hfURLs []string
	for _, n := range b.cluster {
		hfURLs = append(hfURLs, n.URL)
	}
	sides = append(sides, side{"hfcache", hfURLs, "p4-hf"})
	if b.ng != nil {
		sides = append(sides, side{"nginx", []string{b.ng.URLs[0]}, "p4-ng"})
	}
	for round := range b.cfg.Rounds {
		if round%2 == 1 && len(sides) == 2 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, s := range sides {
			var urls []string
			for _, u := range s.urls {
				urls = append(urls, u+benchRepo+b.fileName(s.kind, round))
			}
			up0, err := b.hubA.cdnBytes()
			if err != nil {
				return err
			}
			c := newClient(b.sz.P4Clients, false)
			fs, el, err := parallelOnce(c, urls, b.sz.P4Clients)
			c.CloseIdleConnections()
			if err != nil {
				return err
			}
			up, fillEnd, err := b.hubA.cdn()
			if err != nil {
				return err
			}
			var ttfb []float64
			before := 0
			for _, f := range fs {
				ttfb = append(ttfb, float64(f.firstByte.Sub(f.start).Microseconds())/1000)
				if f.firstByte.Before(fillEnd) {
					before++
				}
			}
			sort.Float64s(ttfb)
			a, bl := "hfcache 3 nodes", "nginx 1 node"
			add(r.metric("P4", "64 cold clients, one blob: upstream bytes / file size", "x", "lower", a, bl).want("A", "<=", 1.01), s.name, float64(up-up0)/float64(b.sz.P4))
			add(r.metric("P4", "TTFB min", "ms", "lower", a, bl), s.name, ttfb[0])
			add(r.metric("P4", "TTFB median", "ms", "lower", a, bl), s.name, *median(ttfb))
			add(r.metric("P4", "TTFB max", "ms", "lower", a, bl), s.name, ttfb[len(ttfb)-1])
			// 1 = every client's first byte came before the last upstream byte.
			add(r.metric("P4", "clients with first byte before the fill ended", "fraction", "higher", a, bl).want("A", ">=", 1), s.name, float64(before)/float64(len(fs)))
			add(r.metric("P4", "wall time, all 64 done", "s", "lower", a, bl), s.name, el.Seconds())
		}
	}
	return nil
}

// p5Pairs is how many downloads through the non-owner and from the owner
// P5 makes per round, in alternating pairs.
const p5Pairs = 3

// P5: the warm 1 GiB file through a non-owner vs from its owner.
func (b *bench) p5() error {
	if err := b.warm(b.cluster[0].URL + bigPath); err != nil {
		return err
	}
	h, err := b.probe(b.cluster[0].URL + bigPath)
	if err != nil {
		return err
	}
	owner := h.Get("X-Hfcache-Node")
	var own, other *hfNode
	for i, n := range b.cluster {
		if fmt.Sprintf("c%d", i) == owner {
			own = n
		} else if other == nil {
			other = n
		}
	}
	if own == nil || other == nil {
		return fmt.Errorf("owner %q is not a cluster node", owner)
	}
	r := b.rep
	// Each download takes well under a second here, and the host has
	// slow spells of seconds to a minute (see p2Passes): each round
	// takes p5Pairs pairs, the order alternating from pair to pair, and
	// every download is a sample.
	for pair := range b.cfg.Rounds * p5Pairs {
		order := []*hfNode{other, own}
		if pair%2 == 1 {
			order = []*hfNode{own, other}
		}
		for _, n := range order {
			f, err := get(nilCtx(), b.client, n.URL+bigPath)
			if err != nil {
				return err
			}
			v := float64(f.bytes) / mib / f.end.Sub(f.start).Seconds()
			m := r.metric("P5", "warm 1GiB, one client: throughput", "MiB/s", "higher", "via non-owner", "from owner").want("A/B", ">=", 0.8)
			if n == own {
				m.BVals = append(m.BVals, v)
			} else {
				m.AVals = append(m.AVals, v)
			}
		}
	}
	return b.p5Small()
}

// p5Small: warm hits of the 4 KiB file through each node of the cluster in
// turn, with P2's load. The repository's owner resolves its metadata and
// the blob's owner holds its bytes; a node that is neither must still
// answer a warm hit from memory and its own disk (a hot copy), so the
// slowest node should run about as fast as the fastest. Information, no
// target.
func (b *bench) p5Small() error {
	u := benchRepo + "small.bin"
	for _, n := range b.cluster {
		if err := b.warm(n.URL + u); err != nil {
			return err
		}
		// Enough hits for a non-owner to keep its own copy (hot.go).
		if _, _, err := rawLoadFor(n.URL+u, 4, b.sz.P2Dur/5, b.sz.Small); err != nil {
			return err
		}
	}
	for round := range b.cfg.Rounds {
		var lo, hi float64
		for i := range b.cluster {
			n := b.cluster[(i+round)%len(b.cluster)]
			res, _, err := rawLoadFor(n.URL+u, b.sz.P2Clients, b.sz.P2Dur/2, b.sz.Small)
			if err != nil {
				return fmt.Errorf("%s: %w", n.URL, err)
			}
			v := res.rps()
			if i == 0 || v < lo {
				lo = v
			}
			hi = max(hi, v)
		}
		m := b.rep.metric("P5", "warm 4KiB, 64 keep-alive clients, through each of the 3 nodes: requests/s", "req/s", "higher", "slowest node", "fastest node")
		m.AVals = append(m.AVals, lo)
		m.BVals = append(m.BVals, hi)
	}
	return nil
}

// p7PerRound is how many cold files each server gets per round of P7. One
// time to first byte is a few ms and moves by as much from one try to the
// next on the 2-core VM, so its median needs more samples than a round.
const p7PerRound = 4

// P7: time to first byte of a cold file via hfcache vs straight from the
// fake Hub (following its redirect to the CDN), and via nginx; who goes
// first rotates from one sample to the next.
func (b *bench) p7() error {
	r := b.rep
	follow := newClient(4, true)
	follow.Timeout = 5 * time.Minute
	for sample := range b.cfg.Rounds * p7PerRound {
		type try struct {
			name, url string
			c         *http.Client
		}
		tries := []try{
			{"hfcache", b.hfA.URL + benchRepo + b.fileName("p7-hf", sample), b.client},
			{"direct", b.hubA.URL + benchRepo + b.fileName("p7-dir", sample), follow},
		}
		if b.ng != nil {
			tries = append(tries, try{"nginx", b.ng.URLs[0] + benchRepo + b.fileName("p7-ng", sample), b.client})
		}
		for i := range tries {
			t := tries[(i+sample)%len(tries)]
			f, err := get(nilCtx(), t.c, t.url)
			if err != nil {
				return err
			}
			ms := float64(f.firstByte.Sub(f.start).Microseconds()) / 1000
			m := r.metric("P7", "cold file: time to first byte", "ms", "lower", "hfcache", "direct Hub").want("A-B", "<=", 5)
			m2 := r.metric("P7", "cold file: time to first byte (vs nginx)", "ms", "lower", "hfcache", "nginx")
			switch t.name {
			case "hfcache":
				m.AVals = append(m.AVals, ms)
				m2.AVals = append(m2.AVals, ms)
			case "direct":
				m.BVals = append(m.BVals, ms)
			case "nginx":
				m2.BVals = append(m2.BVals, ms)
			}
		}
	}
	return nil
}
