package raftstore

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors of this package, matched with errors.Is. The HTTP layer maps them
// to status codes in one place; nothing else should look at error strings.
var (
	// ErrNotFound: the object named by a delete does not exist.
	ErrNotFound = errors.New("raftstore: not found")
	// ErrConflict: an IfVersion precondition failed, or a delete would
	// leave a reference dangling (a remote used by a repository, a
	// repository used by a distribution).
	ErrConflict = errors.New("raftstore: conflict")
	// ErrNotLeader: this node is a follower; the returned error is a
	// *NotLeaderError naming the leader, so the caller can forward.
	ErrNotLeader = errors.New("raftstore: not the leader")
	// ErrNoLeader: no leader is known (an election is running, or the
	// cluster has no quorum or was never bootstrapped). Retry later.
	ErrNoLeader = errors.New("raftstore: no leader")
	// ErrClosed: the store was shut down.
	ErrClosed = errors.New("raftstore: closed")
)

// NotLeaderError is returned on a follower. It matches ErrNotLeader and
// names the leader known at the time (raft address and server ID).
type NotLeaderError struct {
	LeaderAddr string
	LeaderID   string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("raftstore: not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ValidationError lists every invalid field of a command at once: field
// (JSON name, with "[i]" and "." for nested fields) → what is wrong.
type ValidationError struct {
	Fields map[string]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("raftstore: invalid: ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(e.Fields[k])
	}
	return b.String()
}

// fieldErrors collects field problems; err returns nil when there are none.
type fieldErrors map[string]string

func (f fieldErrors) add(field, format string, args ...any) {
	if _, ok := f[field]; !ok { // the first problem of a field is the useful one
		f[field] = fmt.Sprintf(format, args...)
	}
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &ValidationError{Fields: map[string]string(f)}
}
