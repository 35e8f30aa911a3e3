package membership

import (
	"encoding/json"
	"time"

	"github.com/hashicorp/memberlist"
)

// leaveNotice is what a leaving node sends every member it knows, as a
// memberlist user message over TCP (encrypted with the cluster key), just
// before memberlist's own leave. memberlist reports a leave and a failure
// alike to its event delegate; the notice is how the others tell them
// apart (DESIGN.md).
type leaveNotice struct {
	Name string `json:"n"`
	Life string `json:"i"`
}

// leaveNoticeTag is the first byte of a leave notice (user messages have no
// other use yet).
const leaveNoticeTag = 'L'

// leaveFanout bounds the notices in flight at once.
const leaveFanout = 16

func encodeLeaveNotice(n leaveNotice) []byte {
	b, _ := json.Marshal(n) // two strings: cannot fail
	return append([]byte{leaveNoticeTag}, b...)
}

func decodeLeaveNotice(buf []byte) (leaveNotice, bool) {
	var n leaveNotice
	if len(buf) < 2 || buf[0] != leaveNoticeTag {
		return n, false
	}
	if err := json.Unmarshal(buf[1:], &n); err != nil || n.Name == "" || n.Life == "" {
		return leaveNotice{}, false
	}
	return n, true
}

// announceLeave sends the leave notice to every other member memberlist
// knows, in parallel, waiting at most timeout. Sends still going on then
// are cut and awaited by stopLocked.
func (m *Membership) announceLeave(timeout time.Duration) (sent, failed int) {
	msg := encodeLeaveNotice(leaveNotice{Name: m.cfg.Name, Life: m.local.life})
	var targets []memberlist.Node
	for _, n := range m.list.Members() {
		if n.Name != m.cfg.Name {
			targets = append(targets, *n) // a copy: memberlist owns *n
		}
	}
	if len(targets) == 0 {
		return 0, 0
	}
	results := make(chan error, len(targets))
	slots := make(chan struct{}, leaveFanout)
	for _, n := range targets {
		m.sends.Add(1)
		go func() {
			defer m.sends.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			err := m.list.SendReliable(&n, msg)
			if err != nil {
				m.logger.Debug("leave notice not delivered", "member", n.Name, "err", err)
			}
			results <- err
		}()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range targets {
		select {
		case err := <-results:
			if err == nil {
				sent++
			}
		case <-timer.C:
			return sent, len(targets) - sent
		}
	}
	return sent, len(targets) - sent
}
