package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "node-1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.BindAddr != ":7946" || cfg.JoinRetryMin != time.Second || cfg.JoinRetryMax != 30*time.Second {
		t.Errorf("DefaultConfig = %+v", cfg)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Name:          "",
		BindAddr:      "localhost:7946",
		AdvertiseAddr: "10.0.0.1:0",
		Join:          []string{"10.0.0.2:7946", "bad host:1", "10.0.0.3:99999", ""},
		JoinRetryMin:  -time.Second,
		JoinRetryMax:  -time.Second,
		Meta: Meta{
			ClientURL: "ftp://x",
			AdminURL:  "http://",
			RaftAddr:  "no-port",
			Version:   strings.Repeat("v", 500),
		},
	}
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{
		"Name is empty",
		`BindAddr "localhost:7946"`,
		`AdvertiseAddr "10.0.0.1:0"`,
		`Join[1] "bad host:1"`,
		`Join[2] "10.0.0.3:99999"`,
		`Join[3] ""`,
		"JoinRetryMin -1s is negative",
		"JoinRetryMax -1s is negative",
		`Meta.ClientURL "ftp://x"`,
		`Meta.AdminURL "http://"`,
		`Meta.RaftAddr "no-port"`,
		"more than memberlist's 512",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate misses %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "Join[0]") {
		t.Errorf("Validate refuses a good seed:\n%v", err)
	}
}

func TestValidateCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"empty name", func(c *Config) { c.Name = "" }, "Name is empty"},
		{"name with space", func(c *Config) { c.Name = "node 1" }, "spaces"},
		{"long name", func(c *Config) { c.Name = strings.Repeat("n", 129) }, "more than 128"},
		{"bind any host", func(c *Config) { c.BindAddr = ":0" }, ""},
		{"bind ipv6", func(c *Config) { c.BindAddr = "[::1]:7946" }, ""},
		{"bind no port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "BindAddr"},
		{"bind bad port", func(c *Config) { c.BindAddr = "127.0.0.1:x" }, "BindAddr"},
		{"bind host name", func(c *Config) { c.BindAddr = "localhost:7946" }, "must be an IP"},
		{"advertise host", func(c *Config) { c.AdvertiseAddr = "cache1.lab" }, ""},
		{"advertise ip", func(c *Config) { c.AdvertiseAddr = "10.0.0.5" }, ""},
		{"advertise ipv6", func(c *Config) { c.AdvertiseAddr = "fd00::5" }, ""},
		{"advertise host:port", func(c *Config) { c.AdvertiseAddr = "10.0.0.5:7000" }, ""},
		{"advertise bad", func(c *Config) { c.AdvertiseAddr = "a/b" }, "AdvertiseAddr"},
		{"advertise empty host", func(c *Config) { c.AdvertiseAddr = ":7946" }, "no host"},
		{"join host", func(c *Config) { c.Join = []string{"cache1"} }, ""},
		{"join ipv6", func(c *Config) { c.Join = []string{"[fd00::1]:7946"} }, ""},
		{"join port 0", func(c *Config) { c.Join = []string{"cache1:0"} }, "port 0"},
		{"retry min > max", func(c *Config) { c.JoinRetryMin, c.JoinRetryMax = time.Minute, time.Second }, "more than JoinRetryMax"},
		{"meta at the limit", func(c *Config) {
			c.Meta = Meta{}
			c.Meta.Version = strings.Repeat("v", 512-len(`{"c":"","a":"","v":"","i":"0123456789abcdef"}`))
		}, ""},
		{"meta one byte over", func(c *Config) {
			c.Meta = Meta{}
			c.Meta.Version = strings.Repeat("v", 513-len(`{"c":"","a":"","v":"","i":"0123456789abcdef"}`))
		}, "more than memberlist's 512"},
		{"raft addr", func(c *Config) { c.Meta.RaftAddr = "10.0.0.5:7947" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Name = "n1"
			cfg.Meta = testMeta("n1")
			tc.mod(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error with %q", err, tc.want)
			}
			if _, newErr := New(cfg); (newErr == nil) != (err == nil) {
				t.Errorf("New = %v, Validate = %v", newErr, err)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{Name: "n", Join: []string{"cache1", "10.0.0.2:8000", "fd00::1"}, JoinRetryMax: 100 * time.Millisecond}
	d := c.withDefaults()
	if d.BindAddr != ":7946" || d.Logger == nil {
		t.Errorf("withDefaults = %+v", d)
	}
	if d.JoinRetryMin != 100*time.Millisecond || d.JoinRetryMax != 100*time.Millisecond {
		t.Errorf("retry bounds %v..%v, want the set max to cap the default min", d.JoinRetryMin, d.JoinRetryMax)
	}
	if got := fmt.Sprint(d.Join); got != "[cache1:7946 10.0.0.2:8000 [fd00::1]:7946]" {
		t.Errorf("seeds = %s", got)
	}
	if c.Join[0] != "cache1" {
		t.Error("withDefaults changed the caller's seeds")
	}
}

func TestSecretIsNotPrinted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "n"
	cfg.Secret = "hunter2-hunter2"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{b.String(), fmt.Sprint(cfg), fmt.Sprintf("%v %+v %s", cfg, cfg, cfg)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if !strings.Contains(b.String(), "secret_set=true") {
		t.Errorf("log lacks secret_set: %s", b.String())
	}
}

func TestGossipKey(t *testing.T) {
	k1, k2 := gossipKey("s1"), gossipKey("s2")
	if len(k1) != 32 || string(k1) == string(k2) || string(k1) != string(gossipKey("s1")) {
		t.Errorf("gossipKey: %x %x", k1, k2)
	}
}
