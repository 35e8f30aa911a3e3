package main

import (
	"fmt"
	"os"
	"time"
)

// P2: warm hits of a 4 KiB file, 64 keep-alive clients for a fixed time.
// The load comes from rawLoadFor (rawload.go), a lean HTTP/1.1 client built
// as wrk is (net/http's client alone would saturate a 2-core machine), and
// then, when it is installed, from wrk itself (wrk.go): each round runs
// every server under one generator, in one-second passes (p2Passes), then
// under the other. Both generators' rows are judged.
// Each generator's own CPU per request is reported too, so readers see what
// it costs, and so is each server's.
//
// A third server takes its turn in every round: the reference (h1ref.go),
// hfcache's HTTP layer replaying hfcache's own response with no cache work.
// Its rows say how much of the gap to nginx is the hit path and how much
// the HTTP layer and the header block.
func (b *bench) p2() error {
	srvs := b.servers(0)
	for _, s := range srvs {
		if err := b.warm(s.url + benchRepo + "small.bin"); err != nil {
			return err
		}
	}
	ref, err := startRef(b.hfA.URL + benchRepo + "small.bin")
	if err != nil {
		return fmt.Errorf("the reference server: %w", err)
	}
	defer ref.Stop(os.Interrupt, stopTimeout)
	const refName = "reference"
	srvs = append(srvs, server{name: refName, url: ref.URL, pids: func() []int { return []int{ref.Pid()} }})
	passes, dur := p2Passes(b.sz.P2Dur)
	gens := []p2Gen{{label: "", process: "bench process", run: func(url string) (p2Sample, error) {
		res, cpu, err := rawLoadFor(url, b.sz.P2Clients, dur, b.sz.Small)
		if err != nil {
			return p2Sample{}, err
		}
		return p2Sample{res.requests, res.rps(), res.quantile(0.50), res.quantile(0.99), cpu}, nil
	}}}
	if b.cfg.WrkBin != "" {
		gens = append(gens, p2Gen{label: "wrk: ", process: "wrk process", run: func(url string) (p2Sample, error) {
			res, err := runWrk(b.cfg.WrkBin, url, b.sz.P2Clients, dur, b.sz.Small)
			if err != nil {
				return p2Sample{}, err
			}
			return p2Sample{res.requests, res.rps, res.p50, res.p99, res.cpu}, nil
		}})
	}
	for round := range b.cfg.Rounds {
		for _, g := range gens {
			for pass := range passes {
				if err := b.p2Pass(g, ordered(srvs, round*passes+pass), refName); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// p2Passes splits P2's time per server and round into passes of about a
// second, run one after the other through every server, so that each
// round's servers are measured a second apart instead of a whole 5 s run
// apart. This host has spells of seconds to minutes in which a Go
// server needs up to ~1.4 times the CPU for the same work, and nginx
// less (two identical nodes slowed together; docs/PERFORMANCE.md,
// session 11): with one 5-second run per server, a spell could fall on
// hfcache's run and not on nginx's, or the other way. Each pass is a
// sample of the round.
func p2Passes(d time.Duration) (passes int, each time.Duration) {
	passes = max(1, int(d/time.Second))
	return passes, d / time.Duration(passes)
}

// p2Gen is one of P2's load generators; label prefixes its rows' names
// ("" for the bench's own, which keeps the rows' historical names).
type p2Gen struct {
	label   string
	process string // where its CPU is counted
	run     func(url string) (p2Sample, error)
}

// p2Sample is one generator run against one server.
type p2Sample struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	genCPU   time.Duration // the generator's own CPU
}

// p2Pass runs g once against each server, in order, and adds one sample
// to each of the pass's rows: hfcache against nginx, and the reference
// against nginx.
func (b *bench) p2Pass(g p2Gen, srvs []server, refName string) error {
	type result struct{ rps, p99, cpu float64 }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := b.rep
	got := map[string]result{}
	for _, s := range srvs {
		c0 := cpuSeconds(s.pids())
		res, err := g.run(s.url + benchRepo + "small.bin")
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		srvCPU := cpuSeconds(s.pids()) - c0
		got[s.name] = result{res.rps, ms(res.p99), srvCPU * 1e6 / float64(max(res.requests, 1))}
		if s.name == refName {
			continue
		}
		add(r.metric("P2", g.label+"warm 4KiB, 64 keep-alive clients: requests/s", "req/s", "higher", "hfcache", "nginx").want("A/B", ">=", 1.2), s.name, res.rps)
		add(r.metric("P2", g.label+"warm 4KiB: p50 latency", "ms", "lower", "hfcache", "nginx"), s.name, ms(res.p50))
		add(r.metric("P2", g.label+"warm 4KiB: p99 latency", "ms", "lower", "hfcache", "nginx").want("A/B", "<=", 1), s.name, ms(res.p99))
		if res.requests > 0 {
			add(r.metric("P2", g.label+"warm 4KiB: load generator CPU per request ("+g.process+")", "µs", "lower", "hfcache", "nginx"), s.name, float64(res.genCPU.Nanoseconds())/1000/float64(res.requests))
			add(r.metric("P2", g.label+"warm 4KiB: server CPU per request", "µs", "lower", "hfcache", "nginx"), s.name, got[s.name].cpu)
		}
	}
	// The reference against nginx of the same pass.
	refGot := got[refName]
	const a = "h1, no cache work"
	refRows := []struct {
		name, unit, better string
		v                  func(result) float64
	}{
		{"reference (hfcache's response replayed by h1): requests/s", "req/s", "higher", func(x result) float64 { return x.rps }},
		{"reference: p99 latency", "ms", "lower", func(x result) float64 { return x.p99 }},
		{"reference: server CPU per request", "µs", "lower", func(x result) float64 { return x.cpu }},
	}
	for _, row := range refRows {
		m := r.metric("P2", g.label+row.name, row.unit, row.better, a, "nginx")
		m.AVals = append(m.AVals, row.v(refGot))
		if ng, ok := got["nginx"]; ok {
			m.BVals = append(m.BVals, row.v(ng))
		}
	}
	return nil
}
