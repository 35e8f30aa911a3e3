// Command bench runs hfcache and nginx (a single-node proxy_cache) side by
// side in front of the same fake Hub and reports medians and the ratio
// hfcache/nginx for each measurement (see docs/PERFORMANCE.md).
//
//	go build -o bin/hfcache ./cmd/hfcache
//	go build -o bin/fakehub ./test/fakehub/cmd/fakehub
//	go run ./test/bench -hfcache bin/hfcache -fakehub bin/fakehub -nginx $(command -v nginx) -json bench-results.json
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

func nilCtx() context.Context { return context.Background() }

func main() {
	serveRefFromEnv() // P2's reference server, started by the bench itself
	var cfg Config
	flag.StringVar(&cfg.HFBin, "hfcache", "bin/hfcache", "hfcache binary")
	flag.StringVar(&cfg.HubBin, "fakehub", "bin/fakehub", "fakehub binary (go build -o bin/fakehub ./test/fakehub/cmd/fakehub)")
	flag.StringVar(&cfg.NginxBin, "nginx", "", "nginx binary (empty: skip the nginx columns)")
	flag.StringVar(&cfg.WrkBin, "wrk", "", "wrk binary, P2's second load generator (empty: skip its rows)")
	flag.BoolVar(&cfg.Quick, "quick", false, "tiny sizes and one round: a smoke run")
	flag.IntVar(&cfg.Rounds, "rounds", 0, "rounds per measurement (default 3, 1 with -quick)")
	flag.Int64Var(&cfg.Rate, "rate", 0, "P3: the fake Hub's per-connection cap in bytes/s (default 64 MiB/s; 16 MiB/s with -quick)")
	flag.StringVar(&cfg.WorkDir, "workdir", "", "directory for data (default: a temporary directory, removed at the end)")
	flag.StringVar(&cfg.JSONPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&cfg.Only, "only", "", "comma-separated phases to run, e.g. P1,P2 or XET (default all)")
	flag.StringVar(&cfg.NodeBin, "node", "node", "node binary for the XET phase's JS client (empty: skip XET)")
	flag.StringVar(&cfg.JSDir, "js-dir", "test/js", "directory of xetbench.mjs and its node_modules (@huggingface/hub)")
	flag.Int64Var(&cfg.XetSize, "xet-size", 0, "XET: size of the Xet-backed file in bytes (default 1 GiB; 4 MiB with -quick)")
	flag.StringVar(&cfg.P3Dir, "p3-dir", DefaultP3Dir(), "P3: the tmpfs row keeps both caches' data in a fresh directory here, removed after each round (default /dev/shm when it has more than 3 GiB free; empty: no tmpfs row)")
	flag.Parse()
	if cfg.NodeBin != "" {
		if p, err := exec.LookPath(cfg.NodeBin); err == nil {
			cfg.NodeBin = p
		}
	}
	if a, err := filepath.Abs(cfg.JSDir); err == nil {
		cfg.JSDir = a
	}
	for _, p := range []*string{&cfg.HFBin, &cfg.HubBin, &cfg.NginxBin, &cfg.WrkBin} {
		if *p != "" {
			if a, err := filepath.Abs(*p); err == nil {
				*p = a
			}
		}
	}
	// On SIGINT/SIGTERM the children die with us (Pdeathsig); exit cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	}()
	if _, err := Run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
