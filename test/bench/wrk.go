package main

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// P2's second load generator: wrk, from Debian's packages, which the issue
// names next to a generator of our own. It is written in C, one epoll loop
// per thread, like nginx and like the bench's own (rawload.go). P2 reports
// both and judges both: a result one generator alone shows is a result
// about that generator.

// wrkResult is what one wrk run measured.
type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // wrk's own CPU, user and system
}

// runWrk runs wrk against url with conns keep-alive connections for d, one
// thread per core. It fails when any response was not 2xx or 3xx, when a
// socket failed, or when a response was shorter than minBytes on average:
// wrk checks nothing else, and a fast wrong answer must not count.
func runWrk(bin, url string, conns int, d time.Duration, minBytes int64) (wrkResult, error) {
	threads := min(runtime.NumCPU(), conns)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.Command(bin, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", url)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	r, err := parseWrk(out.String(), minBytes)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out.String())
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m), ([0-9.]+)(B|KB|MB|GB|TB) read$`)
	wrkRate    = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)$`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)$`)
	wrkBad     = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)$`)
	wrkSockets = regexp.MustCompile(`(?m)^\s*Socket errors: (.*)$`)

	// The units wrk prints sizes (1024-based) and times in.
	wrkBytes = map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
	wrkTimes = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}
)

// parseWrk reads wrk's report (with --latency).
func parseWrk(out string, minBytes int64) (wrkResult, error) {
	var r wrkResult
	if m := wrkBad.FindStringSubmatch(out); m != nil {
		return r, fmt.Errorf("%s responses were not 2xx or 3xx", m[1])
	}
	if m := wrkSockets.FindStringSubmatch(out); m != nil {
		return r, fmt.Errorf("socket errors: %s", m[1])
	}
	t := wrkTotal.FindStringSubmatch(out)
	rate := wrkRate.FindStringSubmatch(out)
	if t == nil || rate == nil {
		return r, errors.New("no request count or rate in the report")
	}
	r.requests, _ = strconv.ParseInt(t[1], 10, 64)
	r.rps, _ = strconv.ParseFloat(rate[1], 64)
	if r.requests <= 0 || r.rps <= 0 {
		return r, errors.New("no request completed")
	}
	// wrk prints bytes with two decimals in 1024-based units: allow for
	// the rounding.
	read, _ := strconv.ParseFloat(t[4], 64)
	read *= wrkBytes[t[5]]
	if per := (read + 0.01*read) / float64(r.requests); per < float64(minBytes) {
		return r, fmt.Errorf("%.0f bytes read per response, want at least %d", per, minBytes)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		d := time.Duration(v * float64(wrkTimes[m[3]]))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 <= 0 || r.p99 <= 0 {
		return r, errors.New("no latency distribution in the report")
	}
	return r, nil
}
