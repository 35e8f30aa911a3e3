package main

import "fmt"

// P3: one client, a cold file from a Hub that caps each connection at R.
func (b *bench) p3() error {
	r := b.rep
	srvs := b.servers(1)
	for round := range b.cfg.Rounds {
		for _, s := range ordered(srvs, round) {
			kind := "p3-hf"
			if s.name == "nginx" {
				kind = "p3-ng"
			}
			up0 := b.hubB.proxy.Bytes()
			f, err := get(nilCtx(), b.client, s.url+benchRepo+b.fileName(kind, round))
			if err != nil {
				return err
			}
			rate := float64(f.bytes) / f.end.Sub(f.start).Seconds()
			add(r.metric("P3", fmt.Sprintf("cold file, Hub capped at R=%.0f MiB/s per connection: client throughput", float64(b.sz.Rate)/mib), "R", "higher", "hfcache", "nginx"), s.name, rate/float64(b.sz.Rate))
			add(r.metric("P3", "cold capped: upstream bytes / file size", "x", "lower", "hfcache", "nginx"), s.name, float64(b.hubB.proxy.Bytes()-up0)/float64(b.sz.P3))
		}
	}
	return nil
}
