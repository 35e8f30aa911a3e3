package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
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

// wireMeta is Meta as gossiped. Leaving is set by a node that is about to
// leave gracefully, so the others can tell a leave from a crash (memberlist
// does not tell its event delegate which one it was).
type wireMeta struct {
	Meta
	Leaving bool `json:"l,omitempty"`
}

// encodeMeta is the metadata memberlist carries for a member.
func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	b, err := json.Marshal(wireMeta{Meta: m, Leaving: leaving})
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
// an encoding too large for memberlist (counted with the leave flag set).
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
	if _, err := encodeMeta(m, true); err != nil {
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

// localMeta is this node's metadata, served to memberlist (its Delegate).
type localMeta struct {
	mu      sync.Mutex
	meta    Meta
	leaving bool
	encoded []byte
}

var _ memberlist.Delegate = (*localMeta)(nil)

// set replaces the metadata; the previous one stays if the new one does not
// encode within memberlist's limit.
func (l *localMeta) set(m Meta, leaving bool) error {
	b, err := encodeMeta(m, leaving)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.meta, l.leaving, l.encoded = m, leaving, b
	l.mu.Unlock()
	return nil
}

func (l *localMeta) get() (Meta, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.meta, l.leaving
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

// NotifyMsg implements memberlist.Delegate; no user messages are sent.
func (l *localMeta) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (l *localMeta) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate; no state beyond membership.
func (l *localMeta) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (l *localMeta) MergeRemoteState(buf []byte, join bool) {}
