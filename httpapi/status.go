package httpapi

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/raftstore"
)

// StatusSource is what the status page needs from the node beyond the
// admin API's other sources; node.Node satisfies it.
type StatusSource interface {
	Fills() []node.FillProgress
	TopRepos(n int) []node.RepoActivity
	RecentErrors() []node.RecentError
	RingShares() map[string]float64
}

var _ StatusSource = (*node.Node)(nil)

// statusTopRepos is how many repositories the page lists.
const statusTopRepos = 20

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Parse(statusHTML))

// statusPage is the status page's data, formatted for display.
type statusPage struct {
	Node     string
	Rendered string
	Refresh  int

	Members    []statusMember
	Alive      int
	HasRaft    bool
	RaftState  string
	Term       uint64
	Leader     string
	Voters     []string
	NonVoters  []string
	Applied    uint64
	StoreUsed  int64
	StoreMax   int64
	StoreText  string
	Blobs      int
	Xorbs      int
	XorbText   string
	Repos      []statusRepo
	Fills      []statusFill
	Errors     []statusError
	MaxErrors  int
	ReposShown int
}

type statusMember struct {
	Name, State, Role, Share, Bytes, AdminURL string
	Self                                      bool
}

type statusRepo struct {
	Repo                  string
	Requests, Hits        int64
	HitRatio, Bytes, Mean string
}

type statusFill struct {
	Repo, Path, Blob, Source, Progress, Elapsed string
	Written, Size                               int64
}

type statusError struct {
	At, Kind, Repo, Path, Detail string
	Status                       int
}

// status serves GET /: the node's and cluster's state as a page a browser
// renders without any other request (inline CSS, no scripts), reloading
// itself every few seconds.
func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	page := a.statusPage(time.Now())
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, page); err != nil {
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but this page's own inline style: no scripts, no frames,
	// no other origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

func (a *admin) statusPage(now time.Time) statusPage {
	src := a.d.Status
	p := statusPage{Node: a.d.Node.Name(), Rendered: now.UTC().Format("2006-01-02 15:04:05 UTC"), Refresh: 5,
		MaxErrors: 50, ReposShown: statusTopRepos}

	var raft raftstore.Status
	servers := map[string]raftstore.Server{}
	if a.d.Config != nil {
		raft = a.d.Config.Status()
		p.HasRaft = true
		p.RaftState, p.Term, p.Leader, p.Applied = raft.State, raft.Term, raft.LeaderID, raft.AppliedIndex
		for _, s := range raft.Servers {
			servers[s.ID] = s
			if s.Suffrage == "voter" {
				p.Voters = append(p.Voters, s.ID)
			} else {
				p.NonVoters = append(p.NonVoters, s.ID)
			}
		}
		slices.Sort(p.Voters)
		slices.Sort(p.NonVoters)
	}

	st := a.d.Store()
	p.StoreUsed, p.StoreMax, p.Blobs = st.Used, st.Budget, st.Blobs
	p.Xorbs, p.XorbText = st.Xorbs, formatBytes(st.XorbBytes)
	p.StoreText = formatBytes(st.Used) + " of " + formatBytes(st.Budget)
	if st.Budget > 0 {
		p.StoreText += fmt.Sprintf(" (%.1f %%)", 100*float64(st.Used)/float64(st.Budget))
	}

	shares := src.RingShares()
	var members []statusMember
	if a.d.Members != nil {
		for _, m := range a.d.Members() {
			sm := statusMember{Name: m.Name, State: string(m.State), Self: m.Self, Share: "—", Bytes: "—", AdminURL: m.Meta.AdminURL}
			if m.State == "alive" {
				p.Alive++
			}
			if s, ok := shares[m.Name]; ok {
				sm.Share = fmt.Sprintf("%.1f %%", 100*s)
			}
			if m.Self {
				sm.Bytes = formatBytes(st.Used)
			}
			switch s, ok := servers[m.Name]; {
			case !ok:
				sm.Role = "—"
			case s.Leader:
				sm.Role = "leader"
			default:
				sm.Role = s.Suffrage
			}
			members = append(members, sm)
		}
	}
	slices.SortFunc(members, func(x, y statusMember) int { return strings.Compare(x.Name, y.Name) })
	p.Members = members

	for _, r := range src.TopRepos(statusTopRepos) {
		sr := statusRepo{Repo: r.Repo, Requests: r.Requests, Hits: r.Hits, Bytes: formatBytes(r.Bytes), HitRatio: "—"}
		if r.Requests > 0 {
			sr.HitRatio = fmt.Sprintf("%.0f %%", 100*float64(r.Hits)/float64(r.Requests))
		}
		p.Repos = append(p.Repos, sr)
	}
	for _, f := range src.Fills() {
		sf := statusFill{Repo: f.Repo, Path: f.Path, Blob: f.Blob.String(), Source: f.Source, Written: f.Written, Size: f.Size,
			Progress: formatBytes(f.Written) + " of " + formatBytes(f.Size)}
		if f.Size > 0 {
			sf.Progress += fmt.Sprintf(" (%.1f %%)", 100*float64(f.Written)/float64(f.Size))
		}
		if !f.Started.IsZero() {
			sf.Elapsed = now.Sub(f.Started).Round(time.Second).String()
		}
		p.Fills = append(p.Fills, sf)
	}
	for _, e := range src.RecentErrors() {
		p.Errors = append(p.Errors, statusError{At: e.At.UTC().Format("15:04:05"), Kind: e.Kind, Status: e.Status, Repo: e.Repo, Path: e.Path, Detail: e.Detail})
	}
	return p
}

// formatBytes is n in binary units ("1.5 GiB").
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
