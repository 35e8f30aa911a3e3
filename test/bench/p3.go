package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// P3: one client, a cold file from a Hub that caps each connection at R.
// Two rows per server: with both caches' data on tmpfs (cfg.P3Dir: the
// target's row, with the disk out of the way) and on the work directory's
// disk (information: on the 2-core VM writes of new data run at 200-450
// MB/s, see docs/PERFORMANCE.md).
func (b *bench) p3() error {
	if b.cfg.P3Dir != "" {
		if err := b.p3Tmpfs(); err != nil {
			return err
		}
	}
	for round := range b.cfg.Rounds {
		for _, s := range ordered(b.servers(1), round) {
			if err := b.p3Get(s, round, "on the work dir's disk (information)", "disk"); err != nil {
				return err
			}
		}
	}
	return nil
}

// p3Tmpfs runs each round on a fresh hfcache node and a fresh nginx, both
// on hub B with their data in a new directory under cfg.P3Dir, stopped and
// removed after the round so that tmpfs does not fill. The round's files
// are the same as the disk row's: each cache is empty, so they are cold.
func (b *bench) p3Tmpfs() error {
	dir, err := os.MkdirTemp(b.cfg.P3Dir, "hfcache-bench-p3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for round := range b.cfg.Rounds {
		rdir := filepath.Join(dir, fmt.Sprintf("r%d", round))
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			return err
		}
		err := b.p3TmpfsRound(rdir, round)
		os.RemoveAll(rdir)
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) p3TmpfsRound(dir string, round int) error {
	hf, err := startHF(b.cfg.HFBin, b.hubB.URL, filepath.Join(dir, "hf"), "--node-name", "single-capped-tmpfs")
	if err != nil {
		return err
	}
	defer hf.stop()
	srvs := []server{{name: "hfcache", url: hf.URL, pids: func() []int { return []int{hf.Pid()} }}}
	if b.cfg.NginxBin != "" {
		ng, err := startNginx(b.cfg.NginxBin, filepath.Join(dir, "nginx"), []string{b.hubB.URL})
		if err != nil {
			return err
		}
		defer ng.stop()
		srvs = append(srvs, server{name: "nginx", url: ng.URLs[0], pids: ng.pids})
	}
	for _, s := range ordered(srvs, round) {
		if err := b.p3Get(s, round, "on tmpfs", "tmpfs"); err != nil {
			return err
		}
	}
	return nil
}

// p3Get downloads the round's file for s and records throughput in R and
// upstream bytes.
func (b *bench) p3Get(s server, round int, where, short string) error {
	r := b.rep
	kind := "p3-hf"
	if s.name == "nginx" {
		kind = "p3-ng"
	}
	up0, err := b.hubB.cdnBytes()
	if err != nil {
		return err
	}
	f, err := get(nilCtx(), b.client, s.url+benchRepo+b.fileName(kind, round))
	if err != nil {
		return err
	}
	up, err := b.hubB.cdnBytes()
	if err != nil {
		return err
	}
	rate := float64(f.bytes) / f.end.Sub(f.start).Seconds()
	m := r.metric("P3", fmt.Sprintf("cold file %s, Hub capped at R=%.0f MiB/s per connection: client throughput", where, float64(b.sz.Rate)/mib), "R", "higher", "hfcache", "nginx")
	if short == "tmpfs" || b.cfg.P3Dir == "" {
		m.want("A", ">=", 4) // judged on tmpfs, the disk row when there is none
	}
	add(m, s.name, rate/float64(b.sz.Rate))
	add(r.metric("P3", fmt.Sprintf("cold capped, %s: upstream bytes / file size", short), "x", "lower", "hfcache", "nginx"), s.name, float64(up-up0)/float64(b.sz.P3))
	return nil
}

// DefaultP3Dir is where P3's tmpfs row keeps its data by default: /dev/shm
// when it is a directory with more than 3 GiB free, else "" (no tmpfs row).
func DefaultP3Dir() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil {
		return ""
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free <= 3<<30 {
		return ""
	}
	return "/dev/shm"
}
