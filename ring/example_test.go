package ring_test

import (
	"fmt"

	"github.com/hfcache/hfcache/ring"
)

func Example() {
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		panic(err)
	}
	r.Set([]string{"node-c", "node-a", "node-b"})
	key := "models/gpt2/blob-4"
	owner, _ := r.Owner(key)
	fmt.Println("version", r.Version(), "owner", owner, "preference", r.Preference(key, 3))

	// node-d joins and takes the key: it asks the previous owner before the Hub.
	r.Set([]string{"node-a", "node-b", "node-c", "node-d"})
	owner, _ = r.Owner(key)
	fmt.Println("version", r.Version(), "owner", owner, "previous", r.PreviousOwners(key))
	// Output:
	// version 1 owner node-b preference [node-b node-a node-c]
	// version 2 owner node-d previous [node-b]
}
