// Package raftstore is the cluster's configuration, replicated with Raft
// (hashicorp/raft over TCP, raft-boltdb/v2 for the log and stable store,
// file snapshots): the remotes, repositories and distributions every node
// serves from. Content, metadata and membership do not go through Raft;
// see DESIGN.md for why.
//
// Changes are typed, versioned Commands (PutRemote, DeleteRepository, ...,
// optionally WithIfVersion for optimistic concurrency). Store.Apply
// validates a command on the leader against the current state and
// replicates it; the FSM validates it again while applying, so two changes
// that raced cannot corrupt the state. Apply returns the Raft index of the
// change; any node serves read-your-writes with WaitIndex(index) followed
// by Snapshot, and Changes tells a node to reload.
//
// Errors are matched with errors.Is / errors.As: ErrNotFound, ErrConflict,
// ErrNotLeader (a *NotLeaderError naming the leader, for forwarding),
// ErrNoLeader, ErrClosed and *ValidationError (field → problem).
//
// The transport accepts connections only from addresses Config.AllowPeer
// admits (the node's current gossip members); nil admits everyone.
//
// Lifecycle: Open starts raft without bootstrapping. A lone node calls
// BootstrapSelf(DefaultSeed()) when it has no state (HasState); a cluster
// formed with --bootstrap-expect calls BootstrapExpect on every node. The
// leader's Reconcile turns the membership layer's view into Raft voters and
// non-voters. Shutdown is idempotent and hands leadership over first.
package raftstore
