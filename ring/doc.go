// Package ring maps keys (blob IDs) to the cluster members that own them: the
// owner of a key, an ordered preference list for when the owner is unhealthy,
// and the owners of the key in the last few ring versions.
//
// # Partitions on a ring with bounded loads
//
// A key hashes (xxhash) to one of a fixed number of partitions; partitions are
// placed on a ring of virtual nodes (ReplicationFactor per member) by
// github.com/buraksezer/consistent. Consistent hashing keeps a membership
// change cheap for a cache: going from N to N+1 members moves about 1/(N+1) of
// the keys, so almost every blob stays where it is cached.
//
// Plain consistent hashing still leaves the fullest member well above the
// average (with 40 virtual nodes per member, 35-65% above at 20 to 100
// members), and in a cache the fullest node's disk and network card are the
// cluster's bottleneck.
// Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
// 2017) caps every member at ceil(average × Load) partitions: a partition whose
// natural owner is full goes to the next virtual node clockwise. The price is a
// few more keys moving on a change than the ideal 1/(N+1); ring_test.go
// measures it (go test -v -run Moved ./ring/).
//
// The owner table (one member per partition) is computed once per membership
// change, so Owner is a hash and an array index. The preference list walks the
// partition table from the key's partition (p, p+1, p+2, ...): partition ids
// are hashed onto the ring, so neighbouring ids land at unrelated points, and
// the members that take over an unhealthy owner's keys are spread over the
// cluster instead of all falling on one successor. (consistent.GetClosestN is
// not used for this: it orders members by the hash of their name, so every key
// of an owner gets the same successor, and it allocates on every call.)
//
// # Previous versions and peer fill
//
// When membership changes, the keys that move land on a new owner that does
// not have them yet. Rather than fetching them again from the Hub (slow, rate
// limited, paid upstream egress), the new owner asks the members that owned
// the key in the last few ring versions (PreviousOwners) and copies the blob
// from them: peer fill. Several versions are kept, not one, so a key survives
// a quick succession of changes such as a rolling restart (a node leaves,
// rejoins, the next one leaves). A previous owner may have left the cluster
// since; the caller skips members it cannot reach.
//
// # Guarantees
//
//   - Determinism: owners depend only on the member set and on
//     PartitionCount, ReplicationFactor and Load, never on the order of Set's
//     argument, so every node computes the same ring. All nodes must run the
//     same three values.
//   - No panics: consistent v0.10.0 panics when it cannot place every
//     partition under the load bound (a tight Load, more members than
//     partitions, one member with one virtual node). Each placement runs
//     under recover and falls back to a looser bound, finally to plain
//     unbounded consistent hashing, and logs one warning per Set.
//   - Concurrency: a Ring is safe for concurrent use. Readers load an atomic
//     pointer to an immutable snapshot and never wait for Set, which builds a
//     new snapshot and swaps it in.
package ring
