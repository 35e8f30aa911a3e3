package main

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// bindEnv gives every flag an HFCACHE_<NAME> environment variable
// (--data-dir → HFCACHE_DATA_DIR). A flag given on the command line wins.
func bindEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "HFCACHE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"pb", 1e15},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// parseSize reads a byte size: "200GiB", "1.5TB", "512MiB", "1048576".
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 200GiB, 500GB, 1048576)", s)
	}
	return int64(v * mult), nil
}

// defaultBudget is 80% of the space the cache can have on the filesystem
// holding dir (or its nearest existing parent): the free space plus used,
// the bytes the store already holds, so a restarted node keeps the budget
// it started with instead of shrinking by its own contents.
func defaultBudget(dir string, used int64) int64 {
	for d := dir; ; {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil {
			free := float64(st.Bavail) * float64(st.Bsize)
			return int64((free + float64(used)) * 0.8)
		}
		parent := d[:max(strings.LastIndexByte(strings.TrimSuffix(d, "/"), '/'), 0)]
		if parent == "" {
			if d == "." {
				return 0 // the store refuses a zero budget
			}
			parent = "."
		}
		d = parent
	}
}

// newLogger builds the process logger.
func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// advertiseHost is the host other nodes and the status page use for this
// node: the host of --advertise-addr, else the gossip bind host when it is
// loopback (a test or single-machine cluster), else the first non-loopback
// IPv4 address.
func advertiseHost(advertise, gossip string) (string, error) {
	if advertise != "" {
		if h, _, err := net.SplitHostPort(advertise); err == nil {
			return h, nil
		}
		return advertise, nil
	}
	h, _, err := net.SplitHostPort(gossip)
	if err != nil {
		return "", fmt.Errorf("--gossip-addr %q: %w", gossip, err)
	}
	if h != "" && h != "0.0.0.0" && h != "::" {
		return h, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// raftAdvertise is the Raft address other nodes dial: --raft-advertise, or
// the advertise host with the --raft-addr port.
func raftAdvertise(flag, bind, host string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	_, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("--raft-addr %q: %w", bind, err)
	}
	return net.JoinHostPort(host, port), nil
}
