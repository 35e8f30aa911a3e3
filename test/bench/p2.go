package main

// P2: warm hits of a 4 KiB file, 64 keep-alive clients for a fixed time.
// The load comes from rawLoadFor (rawload.go), a lean HTTP/1.1 client:
// net/http's client alone would saturate a 2-core machine. Its own CPU per
// request is reported too, so readers see what the generator costs.
func (b *bench) p2() error {
	srvs := b.servers(0)
	for _, s := range srvs {
		if err := b.warm(s.url + benchRepo + "small.bin"); err != nil {
			return err
		}
	}
	r := b.rep
	for round := range b.cfg.Rounds {
		for _, s := range ordered(srvs, round) {
			res, cpu, err := rawLoadFor(s.url+benchRepo+"small.bin", b.sz.P2Clients, b.sz.P2Dur, b.sz.Small)
			if err != nil {
				return err
			}
			add(r.metric("P2", "warm 4KiB, 64 keep-alive clients: requests/s", "req/s", "higher", "hfcache", "nginx").want("A/B", ">=", 1.2), s.name, res.rps())
			add(r.metric("P2", "warm 4KiB: p50 latency", "ms", "lower", "hfcache", "nginx"), s.name, float64(res.quantile(0.50).Microseconds())/1000)
			add(r.metric("P2", "warm 4KiB: p99 latency", "ms", "lower", "hfcache", "nginx").want("A/B", "<=", 1), s.name, float64(res.quantile(0.99).Microseconds())/1000)
			if res.requests > 0 {
				add(r.metric("P2", "warm 4KiB: load generator CPU per request (bench process)", "µs", "lower", "hfcache", "nginx"), s.name, float64(cpu.Nanoseconds())/1000/float64(res.requests))
			}
		}
	}
	return nil
}
