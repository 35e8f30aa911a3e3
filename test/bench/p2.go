package main

import (
	"fmt"
	"os"
)

// P2: warm hits of a 4 KiB file, 64 keep-alive clients for a fixed time.
// The load comes from rawLoadFor (rawload.go), a lean HTTP/1.1 client:
// net/http's client alone would saturate a 2-core machine. Its own CPU per
// request is reported too, so readers see what the generator costs, and so
// is each server's.
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
	r := b.rep
	for round := range b.cfg.Rounds {
		type result struct{ rps, p99, cpu float64 }
		got := map[string]result{}
		for _, s := range ordered(srvs, round) {
			c0 := cpuSeconds(s.pids())
			res, cpu, err := rawLoadFor(s.url+benchRepo+"small.bin", b.sz.P2Clients, b.sz.P2Dur, b.sz.Small)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			srvCPU := cpuSeconds(s.pids()) - c0
			p99 := float64(res.quantile(0.99).Microseconds()) / 1000
			got[s.name] = result{res.rps(), p99, srvCPU * 1e6 / float64(max(res.requests, 1))}
			if s.name == refName {
				continue
			}
			add(r.metric("P2", "warm 4KiB, 64 keep-alive clients: requests/s", "req/s", "higher", "hfcache", "nginx").want("A/B", ">=", 1.2), s.name, res.rps())
			add(r.metric("P2", "warm 4KiB: p50 latency", "ms", "lower", "hfcache", "nginx"), s.name, float64(res.quantile(0.50).Microseconds())/1000)
			add(r.metric("P2", "warm 4KiB: p99 latency", "ms", "lower", "hfcache", "nginx").want("A/B", "<=", 1), s.name, p99)
			if res.requests > 0 {
				add(r.metric("P2", "warm 4KiB: load generator CPU per request (bench process)", "µs", "lower", "hfcache", "nginx"), s.name, float64(cpu.Nanoseconds())/1000/float64(res.requests))
				add(r.metric("P2", "warm 4KiB: server CPU per request", "µs", "lower", "hfcache", "nginx"), s.name, got[s.name].cpu)
			}
		}
		// The reference against nginx of the same round.
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
			m := r.metric("P2", row.name, row.unit, row.better, a, "nginx")
			m.AVals = append(m.AVals, row.v(refGot))
			if ng, ok := got["nginx"]; ok {
				m.BVals = append(m.BVals, row.v(ng))
			}
		}
	}
	return nil
}
