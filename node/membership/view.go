package membership

import (
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as this node sees it.
type State string

// States.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// Member is one member of this node's view.
type Member struct {
	Name  string
	Addr  string // gossip "host:port"
	State State
	Meta  Meta
	Self  bool
}

// forgetAfter is how long a dead or left member stays in the view.
const forgetAfter = 24 * time.Hour

// view is this node's picture of the cluster. memberlist feeds it through
// its event delegate (joins, updates, leaves: called in memberlist's order,
// under memberlist's node lock), its ping delegate (successful probes), the
// log bridge (failed probes: suspicion) and the leave notices members send
// before leaving. See DESIGN.md.
//
// Lock order: memberlist's node lock, then mu. Nothing here calls into
// memberlist, and nothing logs while holding mu.
type view struct {
	self    string
	logger  *slog.Logger
	now     func() time.Time
	changes chan struct{}
	deaths  chan struct{} // a member was just declared dead: the join loop retries it soon

	mu      sync.Mutex
	members map[string]*record
	// suspicionMax is memberlist's longest suspicion in a cluster of n
	// members; nil (until Start) disables the expiry of suspicions.
	suspicionMax func(n int) time.Duration
}

type record struct {
	addr    string
	meta    Meta
	life    string // the member's run (see wireMeta)
	leaving bool   // it sent a leave notice in this run
	state   State
	since   time.Time // of the last state change
}

var (
	_ memberlist.EventDelegate = (*view)(nil)
	_ memberlist.PingDelegate  = (*view)(nil)
)

func newView(self string, logger *slog.Logger) *view {
	return &view{
		self:    self,
		logger:  logger,
		now:     time.Now,
		changes: make(chan struct{}, 1),
		deaths:  make(chan struct{}, 1),
		members: map[string]*record{},
	}
}

// signal tells the Changes reader to look again; signals coalesce.
func (v *view) signal() {
	select {
	case v.changes <- struct{}{}:
	default:
	}
}

// NotifyJoin is a member seen for the first time, or back from dead or left.
func (v *view) NotifyJoin(n *memberlist.Node) {
	w, err := decodeMeta(n.Meta)
	v.mu.Lock()
	old := v.members[n.Name]
	v.members[n.Name] = &record{
		addr:    n.Address(),
		meta:    w.Meta,
		life:    w.Life,
		leaving: old != nil && old.leaving && old.life == w.Life,
		state:   StateAlive,
		since:   v.now(),
	}
	v.mu.Unlock()
	v.signal()
	v.badMeta(n, err)
}

// NotifyUpdate is a member's new metadata or address; memberlist also
// marks it alive, which ends a suspicion.
func (v *view) NotifyUpdate(n *memberlist.Node) {
	w, err := decodeMeta(n.Meta)
	addr := n.Address()
	v.mu.Lock()
	r, ok := v.members[n.Name]
	if !ok {
		r = &record{state: StateDead} // not seen join: cannot happen, but be whole
		v.members[n.Name] = r
	}
	changed := r.addr != addr || r.meta != w.Meta || r.state != StateAlive
	if r.life != w.Life {
		r.life, r.leaving = w.Life, false
	}
	r.addr, r.meta = addr, w.Meta
	if r.state != StateAlive {
		r.state, r.since = StateAlive, v.now()
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
	v.badMeta(n, err)
}

// NotifyLeave is a member declared dead, or leaving of its own accord:
// left if it sent a leave notice (or is this node), dead otherwise.
func (v *view) NotifyLeave(n *memberlist.Node) {
	v.mu.Lock()
	r, ok := v.members[n.Name]
	if !ok {
		w, _ := decodeMeta(n.Meta)
		r = &record{addr: n.Address(), meta: w.Meta, life: w.Life}
		v.members[n.Name] = r
	}
	state := StateDead
	if r.leaving || n.Name == v.self { // memberlist never declares this node dead but when it leaves
		state = StateLeft
	}
	r.state, r.since = state, v.now()
	v.mu.Unlock()
	v.signal()
	if state == StateDead {
		select {
		case v.deaths <- struct{}{}:
		default:
		}
	}
}

// leaveNotice is a member announcing its leave. It usually comes before
// memberlist's leave message; if it comes after, it turns dead into left.
func (v *view) leaveNotice(n leaveNotice) {
	v.mu.Lock()
	r, ok := v.members[n.Name]
	ok = ok && r.life == n.Life && n.Name != v.self
	changed := ok && r.state == StateDead
	if ok {
		r.leaving = true
	}
	if changed {
		r.state = StateLeft
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
}

// suspect is one of this node's probes of a member failing: memberlist
// now suspects it (see DESIGN.md). A failed probe of a suspect member
// restarts the clock of expire.
func (v *view) suspect(name string) {
	now := v.now()
	v.mu.Lock()
	changed := v.expire(now)
	r, ok := v.members[name]
	if ok && name != v.self && (r.state == StateAlive || r.state == StateSuspect) {
		changed = changed || r.state == StateAlive
		r.state, r.since = StateSuspect, now
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
}

// NotifyPingComplete is a probe of a member answered: a suspect member has
// refuted the suspicion (memberlist reports no event for that).
func (v *view) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	now := v.now()
	v.mu.Lock()
	changed := v.expire(now)
	if r, ok := v.members[n.Name]; ok && r.state == StateSuspect {
		r.state, r.since = StateAlive, now
		changed = true
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
}

// expire ends the suspicions older than memberlist's longest suspicion
// timeout: had memberlist not cleared them, it would have declared the
// member dead (NotifyLeave) by then. It runs on every probe result and
// every read, so a refuted suspicion lasts at most that long here even if
// this node's next probe of the member is a round away. mu is held.
func (v *view) expire(now time.Time) (changed bool) {
	if v.suspicionMax == nil {
		return false
	}
	bound := v.suspicionMax(len(v.members))
	for _, r := range v.members {
		if r.state == StateSuspect && now.Sub(r.since) > bound {
			r.state, r.since = StateAlive, now
			changed = true
		}
	}
	return changed
}

// setSuspicionBound gives expire memberlist's suspicion settings.
func (v *view) setSuspicionBound(probeInterval time.Duration, suspicionMult, maxTimeoutMult int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.suspicionMax = func(n int) time.Duration {
		// memberlist's suspicionTimeout (util.go) times its max multiplier,
		// plus a probe interval of slack for timers firing late.
		scale := math.Max(1, math.Log10(float64(max(n, 1))))
		minimum := time.Duration(float64(suspicionMult) * scale * float64(probeInterval))
		return time.Duration(max(maxTimeoutMult, 1))*minimum + probeInterval
	}
}

// AckPayload adds nothing to acks.
func (v *view) AckPayload() []byte { return nil }

// snapshot is the view sorted by name, forgetting members dead or left for
// longer than forgetAfter.
func (v *view) snapshot() []Member {
	now := v.now()
	v.mu.Lock()
	changed := v.expire(now)
	out := make([]Member, 0, len(v.members))
	for name, r := range v.members {
		if (r.state == StateDead || r.state == StateLeft) && now.Sub(r.since) > forgetAfter {
			delete(v.members, name)
			continue
		}
		out = append(out, Member{Name: name, Addr: r.addr, State: r.state, Meta: r.meta, Self: name == v.self})
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (v *view) badMeta(n *memberlist.Node, err error) {
	if err != nil {
		v.logger.Warn("member has unreadable metadata; its endpoints are unknown", "member", n.Name, "addr", n.Address(), "err", err)
	}
}
