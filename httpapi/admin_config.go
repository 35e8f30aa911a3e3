package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hfcache/hfcache/raftstore"
)

const (
	maxAdminBody = 1 << 20
	// headerIndex carries the Raft index a write was applied at; reads
	// accept ?index=N to wait for it (read-your-writes on any node).
	headerIndex = "X-Hfcache-Index"
	// headerForwarded marks a write a follower forwarded to the leader: it
	// is never forwarded again.
	headerForwarded = "X-Hfcache-Forwarded"
	// headerLeader names the leader that handled (or would handle) a write.
	headerLeader = "X-Hfcache-Leader"
)

var (
	errUnauthorized = errors.New("admin token missing or wrong")
	errBadRequest   = errors.New("bad request")
	errNoSuchKind   = errors.New("no such object kind")
)

// adminError is the admin API's one error shape.
type adminError struct {
	Error  string            `json:"error"`
	Code   string            `json:"code"`
	Fields map[string]string `json:"fields,omitempty"`
	Leader string            `json:"leader,omitempty"`
}

// writeAdminError maps an error to its status and JSON, in one place.
func writeAdminError(w http.ResponseWriter, err error) {
	e := adminError{Error: err.Error()}
	status := http.StatusInternalServerError
	var ve *raftstore.ValidationError
	var nle *raftstore.NotLeaderError
	jobStatus, jobCode, isJob := jobError(err)
	switch {
	case errors.As(err, &ve):
		status, e.Code, e.Fields = http.StatusBadRequest, "validation", ve.Fields
	case errors.Is(err, errBadRequest):
		status, e.Code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, errUnauthorized):
		status, e.Code = http.StatusUnauthorized, "unauthorized"
	case isJob:
		status, e.Code = jobStatus, jobCode
	case errors.Is(err, raftstore.ErrNotFound), errors.Is(err, errNoSuchKind):
		status, e.Code = http.StatusNotFound, "not_found"
	case errors.Is(err, raftstore.ErrConflict):
		status, e.Code = http.StatusConflict, "conflict"
	case errors.As(err, &nle):
		status, e.Code, e.Leader = http.StatusServiceUnavailable, "not_leader", nle.LeaderID
	case errors.Is(err, raftstore.ErrNoLeader), errors.Is(err, context.DeadlineExceeded):
		status, e.Code = http.StatusServiceUnavailable, "no_leader"
	case errors.Is(err, raftstore.ErrClosed):
		status, e.Code = http.StatusServiceUnavailable, "shutting_down"
	default:
		e.Code = "internal"
	}
	writeJSON(w, status, e)
}

// waitIndex honours ?index=N on reads.
func (a *admin) waitIndex(r *http.Request) error {
	s := r.URL.Query().Get("index")
	if s == "" {
		return nil
	}
	idx, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: index %q", errBadRequest, s)
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.d.Hold)
	defer cancel()
	if err := a.d.Config.WaitIndex(ctx, idx); err != nil {
		return fmt.Errorf("%w: index %d not applied here yet: %w", raftstore.ErrNoLeader, idx, err)
	}
	return nil
}

// objects lists the objects of a kind, sorted by name, tokens redacted.
func objects(s raftstore.Snapshot, kind string) []any {
	var out []any
	switch kind {
	case "remotes":
		for _, v := range s.Remotes {
			out = append(out, v.Redacted())
		}
	case "repositories":
		for _, v := range s.Repositories {
			out = append(out, v)
		}
	case "distributions":
		for _, v := range s.Distributions {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return objectName(out[i]) < objectName(out[j]) })
	if out == nil {
		out = []any{}
	}
	return out
}

func objectName(v any) string {
	switch o := v.(type) {
	case raftstore.Remote:
		return o.Name
	case raftstore.Repository:
		return o.Name
	case raftstore.Distribution:
		return o.Name
	}
	return ""
}

// object finds one object of a kind.
func object(s raftstore.Snapshot, kind, name string) (any, bool) {
	switch kind {
	case "remotes":
		v, ok := s.Remotes[name]
		return v.Redacted(), ok
	case "repositories":
		v, ok := s.Repositories[name]
		return v, ok
	case "distributions":
		v, ok := s.Distributions[name]
		return v, ok
	}
	return nil, false
}

// read is the common start of a read: the object kind, then the
// configuration once ?index=N is applied here.
func (a *admin) read(w http.ResponseWriter, r *http.Request) (string, raftstore.Snapshot, bool) {
	kind, ok := kindOf(r)
	if !ok {
		writeAdminError(w, errNoSuchKind)
		return "", raftstore.Snapshot{}, false
	}
	if err := a.waitIndex(r); err != nil {
		writeAdminError(w, err)
		return "", raftstore.Snapshot{}, false
	}
	return kind, a.d.Config.Snapshot(), true
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	kind, s, ok := a.read(w, r)
	if !ok {
		return
	}
	w.Header().Set(headerIndex, strconv.FormatUint(s.Index, 10))
	writeJSON(w, http.StatusOK, objects(s, kind))
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	kind, s, ok := a.read(w, r)
	if !ok {
		return
	}
	v, ok := object(s, kind, r.PathValue("name"))
	if !ok {
		writeAdminError(w, fmt.Errorf("%w: %s %q", raftstore.ErrNotFound, kind[:len(kind)-1], r.PathValue("name")))
		return
	}
	w.Header().Set(headerIndex, strconv.FormatUint(s.Index, 10))
	writeJSON(w, http.StatusOK, v)
}

func (a *admin) put(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r)
	if !ok {
		writeAdminError(w, errNoSuchKind)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeAdminError(w, fmt.Errorf("%w: reading body: %v", errBadRequest, err))
		return
	}
	name := r.PathValue("name")
	cmd, err := a.putCommand(kind, name, body)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	if im := r.Header.Get("If-Match"); im != "" {
		v, err := strconv.ParseUint(trimETag(im), 10, 64)
		if err != nil {
			writeAdminError(w, fmt.Errorf("%w: If-Match %q: want an object version", errBadRequest, im))
			return
		}
		cmd = cmd.WithIfVersion(v)
	}
	a.write(w, r, body, cmd, func(s raftstore.Snapshot) any {
		v, _ := object(s, kind, name)
		return v
	})
}

// trailing refuses a body with anything after its first JSON value.
func trailing(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// putCommand decodes a PUT body into the command for its kind. A remote
// PUT without a "token" keeps the stored token (tokens are write-only, so
// a read-modify-write must not erase them); "token": "" clears it.
func (a *admin) putCommand(kind, name string, body []byte) (raftstore.Command, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	bad := func(err error) (raftstore.Command, error) {
		return raftstore.Command{}, fmt.Errorf("%w: %s JSON: %v", errBadRequest, kind[:len(kind)-1], err)
	}
	// One JSON object and nothing after it.
	if err := trailing(body); err != nil {
		return bad(err)
	}
	switch kind {
	case "remotes":
		var in struct {
			raftstore.Remote
			Token *string `json:"token"`
		}
		if err := dec.Decode(&in); err != nil {
			return bad(err)
		}
		rm := in.Remote
		rm.Name = name
		if in.Token != nil {
			rm.Token = a.d.Sealer.Seal(*in.Token)
		} else if cur, ok := a.d.Config.Snapshot().Remotes[name]; ok {
			rm.Token = cur.Token
		}
		return raftstore.PutRemote(rm), nil
	case "repositories":
		var in raftstore.Repository
		if err := dec.Decode(&in); err != nil {
			return bad(err)
		}
		in.Name = name
		return raftstore.PutRepository(in), nil
	default:
		var in raftstore.Distribution
		if err := dec.Decode(&in); err != nil {
			return bad(err)
		}
		in.Name = name
		return raftstore.PutDistribution(in), nil
	}
}

func (a *admin) delete(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r)
	if !ok {
		writeAdminError(w, errNoSuchKind)
		return
	}
	name := r.PathValue("name")
	var cmd raftstore.Command
	switch kind {
	case "remotes":
		cmd = raftstore.DeleteRemote(name)
	case "repositories":
		cmd = raftstore.DeleteRepository(name)
	default:
		cmd = raftstore.DeleteDistribution(name)
	}
	if im := r.Header.Get("If-Match"); im != "" {
		v, err := strconv.ParseUint(trimETag(im), 10, 64)
		if err != nil {
			writeAdminError(w, fmt.Errorf("%w: If-Match %q", errBadRequest, im))
			return
		}
		cmd = cmd.WithIfVersion(v)
	}
	a.write(w, r, nil, cmd, nil)
}

// write applies a command through the leader: here if this node leads,
// else forwarded (or redirected with ?redirect=true) to the leader; with no
// leader it holds up to Hold, then answers 503.
func (a *admin) write(w http.ResponseWriter, r *http.Request, body []byte, cmd raftstore.Command, result func(raftstore.Snapshot) any) {
	ctx, cancel := context.WithTimeout(r.Context(), a.d.Hold)
	defer cancel()
	for {
		idx, err := a.d.Config.Apply(ctx, cmd)
		var nle *raftstore.NotLeaderError
		switch {
		case err == nil:
			w.Header().Set(headerIndex, strconv.FormatUint(idx, 10))
			w.Header().Set(headerLeader, a.d.Node.Name())
			if result == nil {
				writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
				return
			}
			writeJSON(w, http.StatusOK, result(a.d.Config.Snapshot()))
			return
		case errors.As(err, &nle) && nle.LeaderID != "" && nle.LeaderID != a.d.Node.Name():
			if r.Header.Get(headerForwarded) != "" {
				// The leader we were forwarded to is not the leader any
				// more: say so rather than bounce the write around.
				writeAdminError(w, err)
				return
			}
			a.forward(w, r, nle.LeaderID, body)
			return
		case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrNoLeader):
			if ctx.Err() != nil {
				writeAdminError(w, fmt.Errorf("%w: none within %v", raftstore.ErrNoLeader, a.d.Hold))
				return
			}
			pause(ctx, 50*time.Millisecond)
		default:
			writeAdminError(w, err)
			return
		}
	}
}

// leaderAdminURL finds the leader's admin URL in the gossip metadata.
func (a *admin) leaderAdminURL(leaderID string) string {
	for _, m := range a.d.Members() {
		if m.Name == leaderID {
			return m.Meta.AdminURL
		}
	}
	return ""
}

// forward relays a write to the leader (or, with ?redirect=true, answers
// 307 to the leader's admin URL).
func (a *admin) forward(w http.ResponseWriter, r *http.Request, leaderID string, body []byte) {
	base := a.leaderAdminURL(leaderID)
	if base == "" {
		writeAdminError(w, fmt.Errorf("%w: leader %s has no known admin URL", raftstore.ErrNoLeader, leaderID))
		return
	}
	target := base + r.URL.RequestURI()
	w.Header().Set(headerLeader, leaderID)
	if r.URL.Query().Get("redirect") == "true" {
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target, bytes.NewReader(body))
	if err != nil {
		writeAdminError(w, err)
		return
	}
	for _, k := range []string{"Authorization", "Content-Type", "If-Match"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(headerForwarded, a.d.Node.Name())
	resp, err := a.fwd.Do(req)
	if err != nil {
		writeAdminError(w, fmt.Errorf("%w: forwarding to leader %s: %v", raftstore.ErrNoLeader, leaderID, err))
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Type", headerIndex, headerLeader} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
