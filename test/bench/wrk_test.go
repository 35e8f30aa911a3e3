package main

import (
	"strings"
	"testing"
	"time"
)

// wrkOK is wrk 4.1.0's report of 4 KiB hits from hfcache.
const wrkOK = `Running 1s test @ http://127.0.0.1:18280/fakehub/bench-model/resolve/main/small.bin
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   414.76us    0.89ms   8.46ms   90.66%
    Req/Sec    28.67k     3.64k   35.37k    59.09%
  Latency Distribution
     50%  103.00us
     75%  225.00us
     90%    1.18ms
     99%    4.20ms
  62694 requests in 1.10s, 288.01MB read
Requests/sec:  56994.44
Transfer/sec:    261.82MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOK, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 62694 || r.rps != 56994.44 || r.p50 != 103*time.Microsecond || r.p99 != 4200*time.Microsecond {
		t.Fatalf("parsed %+v", r)
	}
	bad := map[string]string{
		// A 404 answered fast must not count as a hit.
		"not 2xx": strings.Replace(wrkOK, "Requests/sec:", "  Non-2xx or 3xx responses: 61598\nRequests/sec:", 1),
		"socket":  strings.Replace(wrkOK, "Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec:", 1),
		// 288 MB over 62694 responses is 4.8 KB each: short for a 16 KiB body.
		"short":     wrkOK,
		"no rate":   strings.Replace(wrkOK, "Requests/sec:", "Requests:", 1),
		"no total":  strings.Replace(wrkOK, "62694 requests in", "requests in", 1),
		"no 99%":    strings.Replace(wrkOK, "     99%    4.20ms\n", "", 1),
		"zero done": strings.Replace(strings.Replace(wrkOK, "62694 requests", "0 requests", 1), "56994.44", "0.00", 1),
		"empty":     "",
	}
	for name, out := range bad {
		min := int64(4096)
		if name == "short" {
			min = 16 << 10
		}
		if r, err := parseWrk(out, min); err == nil {
			t.Errorf("%s: parsed %+v, want an error", name, r)
		}
	}
}
