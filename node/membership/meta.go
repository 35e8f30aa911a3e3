package membership

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Meta is a member's identity and endpoints. It travels in memberlist node
// metadata as JSON, which must fit in memberlist.MetaMaxSize (512) bytes.
type Meta struct {
	ClientURL string `json:"c"` // client HTTP base URL, e.g. "http://10.0.0.5:8080"
	AdminURL  string `json:"a"` // admin HTTP base URL
	RaftAddr  string `json:"r,omitempty"`
	Version   string `json:"v"`
}

// wireMeta is Meta as gossiped, with the member's life: a random id drawn
// by each Membership, so a leave announced by one run of a node is never
// taken for the departure of the next run under the same name.
type wireMeta struct {
	Meta
	Life string `json:"i,omitempty"`
}

// lifeLen is the length of a life id (hex).
const lifeLen = 16

// newLife draws a life id.
func newLife() string {
	var b [lifeLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// encodeMeta is the metadata memberlist carries for a member.
func encodeMeta(m Meta, life string) ([]byte, error) {
	b, err := json.Marshal(wireMeta{Meta: m, Life: life})
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("meta is %d bytes encoded, more than memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads another member's metadata. Unknown fields are ignored, so
// a newer node's metadata still decodes.
func decodeMeta(b []byte) (wireMeta, error) {
	var w wireMeta
	if len(b) == 0 {
		return w, errors.New("no metadata")
	}
	err := json.Unmarshal(b, &w)
	return w, err
}

// validate reports every problem with m: malformed URLs or Raft address, or
// an encoding too large for memberlist.
func (m Meta) validate() []error {
	var errs []error
	for _, u := range []struct{ field, value string }{{"ClientURL", m.ClientURL}, {"AdminURL", m.AdminURL}} {
		if u.value == "" {
			continue
		}
		if err := checkBaseURL(u.value); err != nil {
			errs = append(errs, fmt.Errorf("Meta.%s %q: %w", u.field, u.value, err))
		}
	}
	if m.RaftAddr != "" {
		if err := checkHostPort(m.RaftAddr); err != nil {
			errs = append(errs, fmt.Errorf("Meta.RaftAddr %q: %w", m.RaftAddr, err))
		}
	}
	if _, err := encodeMeta(m, strings.Repeat("0", lifeLen)); err != nil {
		errs = append(errs, fmt.Errorf("Meta: %w", err))
	}
	return errs
}

// checkBaseURL accepts an absolute http or https URL with a host.
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", p)
		}
	}
	return nil
}

// splitHostPort splits "host:port" and parses the port (0 to 65535).
func splitHostPort(s string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// checkHostPort accepts "host:port" with a host and a port from 1 to 65535.
func checkHostPort(s string) error {
	host, port, err := splitHostPort(s)
	switch {
	case err != nil:
		return err
	case host == "":
		return errors.New("no host")
	case port == 0:
		return errors.New("port 0")
	}
	return nil
}

// localMeta is this node's side of memberlist's Delegate: its metadata,
// and the leave announcements other members send it (see leave.go).
type localMeta struct {
	life    string
	onLeave func(leaveNotice)

	mu      sync.Mutex
	meta    Meta
	encoded []byte
}

var _ memberlist.Delegate = (*localMeta)(nil)

// set replaces the metadata; the previous one stays if the new one does not
// encode within memberlist's limit.
func (l *localMeta) set(m Meta) error {
	b, err := encodeMeta(m, l.life)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.meta, l.encoded = m, b
	l.mu.Unlock()
	return nil
}

// NodeMeta implements memberlist.Delegate.
func (l *localMeta) NodeMeta(limit int) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.encoded) > limit { // set keeps it within MetaMaxSize, memberlist's limit
		return nil
	}
	return l.encoded
}

// NotifyMsg implements memberlist.Delegate: a member announcing its leave.
// memberlist reuses buf after the call; decoding copies what it keeps.
func (l *localMeta) NotifyMsg(buf []byte) {
	if n, ok := decodeLeaveNotice(buf); ok && l.onLeave != nil {
		l.onLeave(n)
	}
}

// GetBroadcasts implements memberlist.Delegate; nothing is gossiped
// besides memberlist's own messages.
func (l *localMeta) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate; no state beyond membership.
func (l *localMeta) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (l *localMeta) MergeRemoteState(buf []byte, join bool) {}
