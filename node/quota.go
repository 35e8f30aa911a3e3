package node

import (
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// bucketRepoBlobs records which blobs were filled for which configured
// repository: "{repository}\x00{blob}" → size.
const bucketRepoBlobs = "repoblobs"

// SetQuotas sets each configured repository's byte quota (absent: none).
// Quotas are per node: a node keeps at most that many bytes of blobs it
// filled for the repository, evicting the least recently used past it.
func (n *Node) SetQuotas(q map[string]int64) { n.quotas.Store(&q) }

// countAgainstQuota records a blob filled for a repository and evicts the
// repository's least recently used blobs past its quota.
func (n *Node) countAgainstQuota(repository string, id hf.BlobID, size int64) {
	if repository == "" {
		return
	}
	prefix := repository + "\x00"
	if err := n.store.PutMeta(bucketRepoBlobs, prefix+id.String(), []byte(strconv.FormatInt(size, 10))); err != nil {
		n.log.Warn("recording a repository's blob", "repository", repository, "err", err)
	}
	qs := n.quotas.Load()
	if qs == nil {
		return
	}
	quota, ok := (*qs)[repository]
	if !ok {
		return
	}
	var ids []hf.BlobID
	n.store.ScanMeta(bucketRepoBlobs, prefix, func(k string, _ []byte) {
		if id, err := hf.ParseBlobID(strings.TrimPrefix(k, prefix)); err == nil {
			ids = append(ids, id)
		}
	})
	if evicted := n.store.EvictAmong(ids, quota); evicted > 0 {
		n.log.Info("repository over quota: evicted", "repository", repository, "quota", quota, "evicted_bytes", evicted)
	}
	for _, id := range ids {
		if _, ok := n.store.Stat(id); !ok {
			n.store.DeleteMeta(bucketRepoBlobs, prefix+id.String())
		}
	}
}
