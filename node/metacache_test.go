package node

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// slowMeta holds every batch write until released.
type slowMeta struct {
	Store
	started chan struct{}
	release chan struct{}
}

func (s *slowMeta) PutMetaBatch(puts []store.MetaPut) error {
	s.started <- struct{}{}
	<-s.release
	return s.Store.PutMetaBatch(puts)
}

func TestMetadataPersistedBehindRequests(t *testing.T) {
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	slow := &slowMeta{Store: LocalStore(st), started: make(chan struct{}, 16), release: make(chan struct{})}
	c := newMetaCache(slow, 1, 1<<30, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	waitRunning := time.Now().Add(5 * time.Second)
	for {
		c.wmu.Lock()
		running := c.running
		c.wmu.Unlock()
		if running {
			break
		}
		if time.Now().After(waitRunning) {
			t.Fatal("run did not start")
		}
		time.Sleep(time.Millisecond) // polling interval
	}

	// put returns while the store is still writing the first batch.
	put(c, bucketRefs, "a", refEntry{Commit: "c1"})
	<-slow.started
	put(c, bucketRefs, "b", refEntry{Commit: "c2"})
	put(c, bucketRefs, "c", refEntry{Commit: "c3"}) // evicts "b" from memory (max 1)
	// "b" is out of memory and not yet on disk: get finds it queued.
	if e, ok := get[refEntry](c, bucketRefs, "b"); !ok || e.Commit != "c2" {
		t.Fatalf("queued entry: %+v %v", e, ok)
	}
	close(slow.release)
	cancel()
	<-done
	// Everything is on disk after run returns.
	for k, want := range map[string]string{"a": "c1", "b": "c2", "c": "c3"} {
		raw, ok, err := st.GetMeta(bucketRefs, k)
		var e refEntry
		if err != nil || !ok || json.Unmarshal(raw, &e) != nil || e.Commit != want {
			t.Fatalf("%s persisted as %q (%v %v), want commit %s", k, raw, ok, err, want)
		}
	}
	// Without run, put writes through.
	put(c, bucketRefs, "d", refEntry{Commit: "c4"})
	if _, ok, _ := st.GetMeta(bucketRefs, "d"); !ok {
		t.Fatal("put without run must write through")
	}
}

// A file entry's formatted fields (ETag, size) are derived when it enters
// memory, whether it was just put or read back from the store.
func TestFileEntryDerivedInMemoryAndFromDisk(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, err := hf.ParseBlobID("sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	// Upper-case hex, as no Hub sends it: the derived ring key is still the
	// content address's one text form, which every node hashes alike.
	fe := fileEntry{Blob: "sha256:" + strings.ToUpper(id.Hex), Size: 123456}
	check := func(how string, got fileEntry, ok bool) {
		t.Helper()
		if !ok || got.etag != id.ETag() || got.sizeText != "123456" || got.id != id || got.key != id.String() {
			t.Errorf("%s: %+v %v", how, got, ok)
		}
	}
	c := newMetaCache(LocalStore(st), 8, 1<<30, log) // not running: put writes through
	put(c, bucketFiles, "k", fe)
	got, ok := get[fileEntry](c, bucketFiles, "k")
	check("after put", got, ok)

	fresh := newMetaCache(LocalStore(st), 8, 1<<30, log) // a restarted node: memory empty
	got, ok = get[fileEntry](fresh, bucketFiles, "k")
	check("from the store", got, ok)

	// An entry that is not found derives nothing.
	put(c, bucketFiles, "gone", fileEntry{NotFound: true})
	if got, ok := get[fileEntry](c, bucketFiles, "gone"); !ok || got.etag != "" {
		t.Errorf("not found entry: %+v %v", got, ok)
	}
}

// The memory budget counts an API answer's body: the oldest answers leave
// memory first, one larger than the whole budget does not stay (and pushes
// nothing else out), and every one of them is still found (the store has
// it).
func TestMetaCacheByteBudget(t *testing.T) {
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const mib = 1 << 20
	c := newMetaCache(LocalStore(st), 100, 3*mib+3*(entryOverhead+16), slog.New(slog.NewTextHandler(io.Discard, nil)))
	body := func(b byte, n int) []byte { return []byte(strings.Repeat(string(b), n)) }
	inMemory := func(key string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.items[bucketAPI+"\x00"+key]
		return ok
	}
	for i, k := range []string{"a", "b", "c", "d"} {
		put(c, bucketAPI, k, apiEntry{Status: 200, Body: body(byte('a'+i), mib)})
	}
	if inMemory("a") || !inMemory("b") || !inMemory("c") || !inMemory("d") {
		t.Fatalf("after four 1 MiB answers in a 3 MiB budget: a %v b %v c %v d %v, want only a gone",
			inMemory("a"), inMemory("b"), inMemory("c"), inMemory("d"))
	}
	put(c, bucketAPI, "huge", apiEntry{Status: 200, Body: body('h', 4*mib)})
	if inMemory("huge") {
		t.Fatal("an answer larger than the budget stayed in memory")
	}
	// ...and pushed nothing else out on its way.
	if !inMemory("b") || !inMemory("c") || !inMemory("d") {
		t.Fatalf("an answer larger than the budget flushed memory: b %v c %v d %v", inMemory("b"), inMemory("c"), inMemory("d"))
	}
	// A new value too large for memory replaces the old one there too.
	put(c, bucketAPI, "d", apiEntry{Status: 200, Body: body('D', 4*mib)})
	if inMemory("d") {
		t.Fatal("the old value of d stayed in memory after a larger one was put")
	}
	if e, ok := get[apiEntry](c, bucketAPI, "d"); !ok || len(e.Body) != 4*mib || e.Body[0] != 'D' {
		t.Fatal("d does not read as its new value")
	}
	c.mu.Lock()
	used := c.bytes
	c.mu.Unlock()
	if used > c.maxBytes {
		t.Fatalf("%d bytes in memory, budget %d", used, c.maxBytes)
	}
	for i, k := range []string{"a", "huge"} {
		e, ok := get[apiEntry](c, bucketAPI, k)
		if !ok || len(e.Body) == 0 || e.Body[0] != []byte("ah")[i] {
			t.Fatalf("%s not found in the store after leaving memory", k)
		}
	}
}
