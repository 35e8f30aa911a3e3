package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hfcache/hfcache/test/procs"
)

// XET: one Xet-backed file downloaded through a single hfcache node by the
// real @huggingface/hub client (test/js/xetbench.mjs), in Xet mode (XetBlob:
// token route, v2 reconstruction, multi-range xorb GETs to the cache, chunk
// decode in JS) against plain HTTP mode (downloadFile({xet: false}): one GET
// of the resolve URL). Each mode starts on a fresh node with an empty data
// directory (cold), then downloads again from the same node (warm).

const (
	xetRepo = "fakehub/big-xet-model"
	xetFile = "big.bin"
)

// xetResult is what xetbench.mjs prints.
type xetResult struct {
	Error     string   `json:"error"`
	Mode      string   `json:"mode"`
	Blob      string   `json:"blob"`
	Size      int64    `json:"size"`
	Bytes     int64    `json:"bytes"`
	SHA256    string   `json:"sha256"`
	InfoMs    float64  `json:"infoMs"`
	TTFBMs    float64  `json:"ttfbMs"`
	TotalMs   float64  `json:"totalMs"`
	CPUUserMs float64  `json:"cpuUserMs"`
	CPUSysMs  float64  `json:"cpuSysMs"`
	MaxRSSMiB float64  `json:"maxRssMiB"`
	Requests  int      `json:"requests"`
	TokenMs   *float64 `json:"tokenMs"`
	ReconMs   *float64 `json:"reconMs"`
	FirstXorb *float64 `json:"firstXorbMs"`
}

// XetRun is one XET download as the JSON report keeps it.
type XetRun struct {
	Round         int       `json:"round"`
	Mode          string    `json:"mode"` // xet or plain
	Temp          string    `json:"temp"` // cold or warm
	Client        xetResult `json:"client"`
	UpstreamProxy int64     `json:"upstream_bytes_proxy"`   // fake Hub CDN+CAS bytes, counting proxy
	UpstreamCache int64     `json:"upstream_bytes_metrics"` // the node's hfcache_upstream_received_bytes_total delta
	HFCacheCPU    float64   `json:"hfcache_cpu_s"`
	Match         bool      `json:"bytes_match"`
}

// jsReady reports why the JS client cannot run ("" = it can).
func jsReady(nodeBin, jsDir string) string {
	if nodeBin == "" {
		return "node not found"
	}
	if _, err := os.Stat(filepath.Join(jsDir, "xetbench.mjs")); err != nil {
		return fmt.Sprintf("%s/xetbench.mjs not found (-js-dir)", jsDir)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@huggingface", "hub")); err != nil {
		return fmt.Sprintf("@huggingface/hub not installed in %s (make deps)", jsDir)
	}
	return ""
}

// runXetJS runs one download with the JS client.
func (b *bench) runXetJS(hubURL, mode string) (xetResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.cfg.NodeBin, filepath.Join(b.cfg.JSDir, "xetbench.mjs"),
		"--hub", hubURL, "--repo", xetRepo, "--path", xetFile, "--mode", mode)
	cmd.Dir = b.cfg.JSDir
	cmd.Env = append(os.Environ(), "HF_TOKEN=", "HF_ENDPOINT=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := bytes.TrimSpace(stdout.Bytes())
	last := out[bytes.LastIndexByte(out, '\n')+1:]
	var res xetResult
	if jerr := json.Unmarshal(last, &res); jerr != nil || err != nil || res.Error != "" {
		return res, fmt.Errorf("xetbench.mjs --mode %s: %v %s\nstdout: %.2000s\nstderr: %.2000s", mode, err, res.Error, out, stderr.String())
	}
	want := map[string]string{"xet": "XetBlob", "plain": "WebBlob"}[mode]
	if res.Blob != want {
		return res, fmt.Errorf("xetbench.mjs --mode %s: the client used a %s, want a %s", mode, res.Blob, want)
	}
	return res, nil
}

// linkedETag is the file's sha256 as the fake Hub itself reports it.
func linkedETag(hubURL string) (string, error) {
	req, _ := http.NewRequest(http.MethodHead, hubURL+"/"+xetRepo+"/resolve/main/"+xetFile, nil)
	c := newClient(1, false)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	e := strings.Trim(resp.Header.Get("X-Linked-Etag"), `"`)
	if len(e) != 64 {
		return "", fmt.Errorf("fake Hub HEAD %s: %s, X-Linked-Etag %q", xetFile, resp.Status, e)
	}
	return e, nil
}

// upstreamMetric is the node's hfcache_upstream_received_bytes_total, -1
// when it cannot be read.
func upstreamMetric(admin string) int64 {
	v, err := procs.MetricSum(http.DefaultClient, admin+"/metrics", "hfcache_upstream_received_bytes_total")
	if err != nil {
		return -1
	}
	return int64(v)
}

// waitDisk waits until the node serves url from its disk (a plain fill has
// been committed), so the warm download is warm.
func (b *bench) waitDisk(url string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		h, err := b.probe(url)
		if err != nil {
			return err
		}
		if h.Get("X-Hfcache-Source") == "disk" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served from disk within 2m (headers %v)", url, h)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func sizeLabel(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// pXet runs the XET phase on b.hubX.
func (b *bench) pXet() error {
	if why := jsReady(b.cfg.NodeBin, b.cfg.JSDir); why != "" {
		b.rep.Missing = append(b.rep.Missing, "XET skipped: "+why)
		return nil
	}
	want, err := linkedETag(b.hubX.URL)
	if err != nil {
		return err
	}
	r := b.rep
	size := b.sz.Xet
	lbl := sizeLabel(size)
	const a, bl = "xet", "plain"
	var mismatch []string
	for round := range b.cfg.Rounds {
		modes := []string{"xet", "plain"}
		if round%2 == 1 {
			modes = []string{"plain", "xet"}
		}
		for _, mode := range modes {
			dir := filepath.Join(b.cfg.WorkDir, fmt.Sprintf("xet-r%d-%s", round, mode))
			n, err := startHF(b.cfg.HFBin, b.hubX.URL, dir, "--node-name", "xet-"+mode)
			if err != nil {
				return err
			}
			b.onClose(n.stop) // on an early return; stop is idempotent
			for _, temp := range []string{"cold", "warm"} {
				if temp == "warm" && mode == "plain" {
					if err := b.waitDisk(n.URL + "/" + xetRepo + "/resolve/main/" + xetFile); err != nil {
						n.stop()
						return err
					}
				}
				up0, err := b.hubX.cdnBytes()
				if err != nil {
					n.stop()
					return err
				}
				um0, c0 := upstreamMetric(n.Admin), cpuSeconds([]int{n.Pid()})
				res, err := b.runXetJS(n.URL, mode)
				if err != nil {
					n.stop()
					return err
				}
				hfCPU := cpuSeconds([]int{n.Pid()}) - c0
				up, err := b.hubX.cdnBytes()
				if err != nil {
					n.stop()
					return err
				}
				up, um := up-up0, upstreamMetric(n.Admin)-um0
				ok := res.SHA256 == want && res.Bytes == size
				if !ok {
					mismatch = append(mismatch, fmt.Sprintf("round %d %s %s: got %d bytes sha256 %s, want %d bytes %s", round, temp, mode, res.Bytes, res.SHA256, size, want))
				}
				sec := res.TotalMs / 1000
				pre := fmt.Sprintf("%s %s", temp, lbl)
				m := func(name, unit, better string) *Metric {
					return r.metric("XET", pre+": "+name, unit, better, a, bl)
				}
				add2 := func(mt *Metric, v float64) {
					if mode == "xet" {
						mt.AVals = append(mt.AVals, v)
					} else {
						mt.BVals = append(mt.BVals, v)
					}
				}
				add2(m("JS client via 1 node, wall time", "s", "lower"), sec)
				add2(m("throughput", "MiB/s", "higher"), float64(res.Bytes)/mib/sec)
				add2(m("time to first byte", "ms", "lower"), res.TTFBMs)
				add2(m("upstream bytes (fake Hub CDN+CAS) / file size", "x", "lower"), float64(up)/float64(size))
				add2(m("upstream bytes (cache /metrics) / file size", "x", "lower"), float64(um)/float64(size))
				add2(m("client CPU (node)", "cpu-s", "lower"), (res.CPUUserMs+res.CPUSysMs)/1000)
				add2(m("hfcache CPU", "cpu-s", "lower"), hfCPU)
				add2(m("client peak RSS", "MiB", "lower"), res.MaxRSSMiB)
				add2(m("requests sent by the client", "n", "lower"), float64(res.Requests))
				match := 0.0
				if ok {
					match = 1
				}
				add2(m("bytes match (sha256 = file's)", "fraction", "higher"), match)
				r.XetRuns = append(r.XetRuns, XetRun{Round: round, Mode: mode, Temp: temp, Client: res, UpstreamProxy: up, UpstreamCache: um, HFCacheCPU: hfCPU, Match: ok})
				b.logf("XET round %d %s %s: %.2fs %.0f MiB/s ttfb %.0fms upstream %.3gx (metrics %.3gx) node cpu %.1fs hfcache cpu %.1fs match=%v",
					round, temp, mode, sec, float64(res.Bytes)/mib/sec, res.TTFBMs, float64(up)/float64(size), float64(um)/float64(size),
					(res.CPUUserMs+res.CPUSysMs)/1000, hfCPU, ok)
				if mode == "xet" && res.ReconMs != nil && res.FirstXorb != nil {
					b.logf("XET round %d %s xet: info %.0fms, token+reconstruction done at %.0fms, first xorb GET at %.0fms, first byte at %.0fms, %d requests",
						round, temp, res.InfoMs, *res.ReconMs, *res.FirstXorb, res.TTFBMs, res.Requests)
				}
			}
			n.stop()
			_ = os.RemoveAll(dir)
		}
	}
	if len(mismatch) > 0 {
		return fmt.Errorf("the client got bytes that are not the file's: %s", strings.Join(mismatch, "; "))
	}
	return nil
}
