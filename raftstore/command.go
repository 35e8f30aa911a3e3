package raftstore

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// CommandVersion is the version of the command encoding this code writes
// and the highest it applies. A command with a higher V (written by a newer
// node during a rolling upgrade) is refused by the FSM with an error
// response instead of being half understood.
const CommandVersion = 1

// Ops of a Command.
const (
	OpPutRemote          = "put_remote"
	OpDeleteRemote       = "delete_remote"
	OpPutRepository      = "put_repository"
	OpDeleteRepository   = "delete_repository"
	OpPutDistribution    = "put_distribution"
	OpDeleteDistribution = "delete_distribution"

	// opSeed applies Seed atomically once in the cluster's life: it is a
	// no-op when the FSM is already seeded, and only marks it seeded when
	// the configuration is not empty. Only the bootstrap path sends it.
	opSeed = "seed"
)

// Command is one change to the configuration, JSON-encoded in the Raft log.
// Build commands with PutRemote, DeleteRemote, ... and WithIfVersion.
type Command struct {
	V  int    `json:"v"`
	Op string `json:"op"`
	// Name is the object a delete removes.
	Name         string        `json:"name,omitempty"`
	Remote       *Remote       `json:"remote,omitempty"`
	Repository   *Repository   `json:"repository,omitempty"`
	Distribution *Distribution `json:"distribution,omitempty"`
	// IfVersion, when set, is the Version the current object must have
	// (0: the object must not exist), else the command fails with
	// ErrConflict.
	IfVersion *uint64 `json:"if_version,omitempty"`
	// Seed holds the commands of an opSeed.
	Seed []Command `json:"seed,omitempty"`
}

// PutRemote creates or replaces a remote.
func PutRemote(r Remote) Command {
	r = r.clone()
	return Command{V: CommandVersion, Op: OpPutRemote, Remote: &r}
}

// DeleteRemote deletes a remote not used by any repository.
func DeleteRemote(name string) Command {
	return Command{V: CommandVersion, Op: OpDeleteRemote, Name: name}
}

// PutRepository creates or replaces a repository.
func PutRepository(r Repository) Command {
	r = r.clone()
	return Command{V: CommandVersion, Op: OpPutRepository, Repository: &r}
}

// DeleteRepository deletes a repository not used by any distribution.
func DeleteRepository(name string) Command {
	return Command{V: CommandVersion, Op: OpDeleteRepository, Name: name}
}

// PutDistribution creates or replaces a distribution.
func PutDistribution(d Distribution) Command {
	return Command{V: CommandVersion, Op: OpPutDistribution, Distribution: &d}
}

// DeleteDistribution deletes a distribution.
func DeleteDistribution(name string) Command {
	return Command{V: CommandVersion, Op: OpDeleteDistribution, Name: name}
}

// WithIfVersion returns the command with the precondition that the current
// object's Version is v (0: the object must not exist yet).
func (c Command) WithIfVersion(v uint64) Command {
	c.IfVersion = &v
	return c
}

func seedCommand(cmds []Command) Command {
	return Command{V: CommandVersion, Op: opSeed, Seed: cmds}
}

// ObjectName is the name of the object the command changes.
func (c Command) ObjectName() string {
	switch {
	case c.Remote != nil:
		return c.Remote.Name
	case c.Repository != nil:
		return c.Repository.Name
	case c.Distribution != nil:
		return c.Distribution.Name
	}
	return c.Name
}

// LogValue describes the command without its payload (which may hold a
// token).
func (c Command) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("op", c.Op), slog.String("name", c.ObjectName())}
	if c.IfVersion != nil {
		attrs = append(attrs, slog.Uint64("if_version", *c.IfVersion))
	}
	return slog.GroupValue(attrs...)
}

// clone deep-copies the command, so normalising it never touches the
// caller's slices.
func (c Command) clone() Command {
	if c.Remote != nil {
		r := c.Remote.clone()
		c.Remote = &r
	}
	if c.Repository != nil {
		r := c.Repository.clone()
		c.Repository = &r
	}
	if c.Distribution != nil {
		d := *c.Distribution
		c.Distribution = &d
	}
	if c.IfVersion != nil {
		v := *c.IfVersion
		c.IfVersion = &v
	}
	if c.Seed != nil {
		seed := make([]Command, len(c.Seed))
		for i, s := range c.Seed {
			seed[i] = s.clone()
		}
		c.Seed = seed
	}
	return c
}

func encodeCommand(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("raftstore: encode command: %w", err)
	}
	return b, nil
}

func decodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("raftstore: decode command: %w", err)
	}
	return c, nil
}
