package membership

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/memberlist"
)

// Defaults.
const (
	DefaultGossipPort   = 7946
	DefaultJoinRetryMin = time.Second
	DefaultJoinRetryMax = 30 * time.Second

	maxNameLen = 128
)

// ErrInvalidConfig wraps every problem Validate reports.
var ErrInvalidConfig = errors.New("membership: invalid config")

// Config configures a Membership. Start from DefaultConfig.
type Config struct {
	// Name is the node's name, unique in the cluster. A node that restarts
	// with the same name is the same member.
	Name string

	// BindAddr is the gossip "host:port" (TCP and UDP). An empty host binds
	// every interface; port 0 picks a free port, which is then also the
	// advertised port. Default ":7946".
	BindAddr string

	// AdvertiseAddr is the "host" or "host:port" the other nodes reach this
	// node at; a host name is resolved at Start. Default: the bind host if
	// it is a specific address (loopback included), otherwise the first
	// non-loopback IPv4 address of the machine; the port defaults to the
	// bound port.
	AdvertiseAddr string

	// Join lists seeds, "host:port" (or "host", for port 7946).
	Join []string

	// Secret is the cluster secret: gossip is encrypted and authenticated
	// with an AES-256 key derived from it. "" gossips in clear.
	Secret string

	// Meta is this node's identity and endpoints, gossiped to the others.
	Meta Meta

	// JoinRetryMin and JoinRetryMax bound the backoff of the background join
	// loop; JoinRetryMax is also how often members seen dead are retried
	// (partitions heal, restarted members are found), starting JoinRetryMin
	// after a death and backing off to it. Zero means the default (1s and
	// 30s).
	JoinRetryMin, JoinRetryMax time.Duration

	// Tune, if set, adjusts memberlist's configuration (based on
	// memberlist.DefaultLANConfig) before Start creates it: timings, mostly,
	// for tests. Name, addresses, transport, keyring, delegates and logger
	// are set from this Config afterwards and cannot be tuned.
	Tune func(*memberlist.Config)

	// Logger receives this package's logs and memberlist's own, with levels
	// parsed from memberlist's "[DEBUG]", "[INFO]", "[WARN]" and "[ERR]"
	// prefixes. Nil discards them.
	Logger *slog.Logger
}

// DefaultConfig is the configuration of a production node: named after the
// host, gossiping on port 7946 of every interface.
func DefaultConfig() Config {
	name, _ := os.Hostname()
	return Config{
		Name:         name,
		BindAddr:     ":" + strconv.Itoa(DefaultGossipPort),
		JoinRetryMin: DefaultJoinRetryMin,
		JoinRetryMax: DefaultJoinRetryMax,
	}
}

// Validate reports every problem with c at once; each wraps ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	switch {
	case c.Name == "":
		bad("Name is empty")
	case len(c.Name) > maxNameLen:
		bad("Name is %d bytes, more than %d", len(c.Name), maxNameLen)
	case strings.IndexFunc(c.Name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		bad("Name %q has spaces or unprintable characters", c.Name)
	}
	if c.BindAddr != "" {
		if _, _, err := parseBind(c.BindAddr); err != nil {
			bad("BindAddr %q: %v", c.BindAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := parseHostMaybePort(c.AdvertiseAddr); err != nil {
			bad("AdvertiseAddr %q: %v", c.AdvertiseAddr, err)
		}
	}
	for i, seed := range c.Join {
		if _, _, err := parseHostMaybePort(seed); err != nil {
			bad("Join[%d] %q: %v", i, seed, err)
		}
	}
	if c.JoinRetryMin < 0 {
		bad("JoinRetryMin %v is negative", c.JoinRetryMin)
	}
	if c.JoinRetryMax < 0 {
		bad("JoinRetryMax %v is negative", c.JoinRetryMax)
	}
	if c.JoinRetryMin > 0 && c.JoinRetryMax > 0 && c.JoinRetryMin > c.JoinRetryMax {
		bad("JoinRetryMin %v is more than JoinRetryMax %v", c.JoinRetryMin, c.JoinRetryMax)
	}
	for _, err := range c.Meta.validate() {
		bad("%v", err)
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = ":" + strconv.Itoa(DefaultGossipPort)
	}
	minSet, maxSet := c.JoinRetryMin > 0, c.JoinRetryMax > 0
	if !minSet {
		c.JoinRetryMin = DefaultJoinRetryMin
	}
	if !maxSet {
		c.JoinRetryMax = DefaultJoinRetryMax
	}
	if c.JoinRetryMin > c.JoinRetryMax { // one of them defaulted: the one set wins
		if maxSet {
			c.JoinRetryMin = c.JoinRetryMax
		} else {
			c.JoinRetryMax = c.JoinRetryMin
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	seeds := make([]string, len(c.Join))
	for i, s := range c.Join {
		host, port, _ := parseHostMaybePort(s) // validated
		if port == 0 {
			port = DefaultGossipPort
		}
		seeds[i] = net.JoinHostPort(host, strconv.Itoa(port))
	}
	c.Join = seeds
	return c
}

// LogValue keeps the secret out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("bind_addr", c.BindAddr),
		slog.String("advertise_addr", c.AdvertiseAddr),
		slog.Any("join", c.Join),
		slog.Bool("secret_set", c.Secret != ""),
		slog.Any("meta", c.Meta),
	)
}

// String keeps the secret out of fmt output.
func (c Config) String() string {
	return fmt.Sprintf("membership.Config{Name:%q BindAddr:%q AdvertiseAddr:%q Join:%q Secret:%s Meta:%+v}",
		c.Name, c.BindAddr, c.AdvertiseAddr, c.Join, redacted(c.Secret), c.Meta)
}

func redacted(secret string) string {
	if secret == "" {
		return `""`
	}
	return "[redacted]"
}

// gossipKey derives the AES-256 gossip key from the cluster secret. The
// prefix separates it from other keys derived from the same secret.
func gossipKey(secret string) []byte {
	k := sha256.Sum256([]byte("hfcache-gossip\x00" + secret))
	return k[:]
}

// parseBind splits a bind address: the host must be empty (every
// interface) or an IP address; the port may be 0.
func parseBind(s string) (ip net.IP, port int, err error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return nil, 0, err
	}
	if host == "" {
		return net.IPv4zero, port, nil
	}
	if ip = net.ParseIP(host); ip == nil {
		return nil, 0, errors.New("host must be an IP address, or empty for every interface")
	}
	return ip, port, nil
}

// parseHostMaybePort splits "host" or "host:port" (IPv6 in brackets with
// a port); port is 0 when absent.
func parseHostMaybePort(s string) (host string, port int, err error) {
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); ip != nil {
		return ip.String(), 0, nil
	}
	if strings.Contains(s, ":") {
		if host, port, err = splitHostPort(s); err != nil {
			return "", 0, err
		}
		if port == 0 {
			return "", 0, errors.New("port 0")
		}
	} else {
		host = s
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	if net.ParseIP(host) == nil && !isHostName(host) {
		return "", 0, errors.New("host is neither an IP address nor a host name")
	}
	return host, port, nil
}

// isHostName is a loose check of DNS name syntax.
func isHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
