// Package membership is a node's view of the cluster, gossiped with
// github.com/hashicorp/memberlist (SWIM: UDP probes, indirect probes,
// suspicion, TCP push/pull anti-entropy).
//
// Every node runs one Membership. Start binds the gossip port (TCP and UDP)
// and joins the seeds in the background, retrying with backoff until another
// member is known, so a node serves on its own while its seeds come up. A
// node's identity and endpoints (client URL, admin URL, Raft address,
// version) travel in memberlist node metadata (Meta), so nodes find each
// other's endpoints by gossip alone.
//
// Members is this node's view, sorted by name: every member it has seen,
// with a State:
//
//   - alive: answering probes;
//   - suspect: one of this node's own probes failed and memberlist started
//     its suspicion timer; the member is either refuted (alive again) or
//     declared dead when the timer runs out;
//   - dead: declared failed (crash, partition);
//   - left: announced a graceful Leave.
//
// Dead and left members stay in the view for a day, or until they come back
// with the same name. Changes receives a coalesced signal whenever the view
// changes, so the consumer (the node's ring loop) re-reads Members.
//
// With a cluster Secret, gossip is encrypted and authenticated with an
// AES-256 key derived from it; a node with another secret cannot join, and
// both sides log "cluster secret mismatch?".
//
// memberlist does not expose the suspect state nor whether a member left or
// died; DESIGN.md in this directory explains how both are recovered.
package membership
