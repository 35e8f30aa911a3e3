package procs

import (
	"net"
	"strconv"
	"testing"
)

// FreeAddr hands out distinct loopback addresses that can be bound, with
// ports the kernel never assigns to a bind to port 0 (when its ephemeral
// range leaves room).
func TestFreeAddrOutsideEphemeralRange(t *testing.T) {
	lo, hi, ok := nonEphemeralPorts()
	seen := map[string]bool{}
	for range 50 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if ok && (port < lo || port >= hi) {
			t.Fatalf("%s: port outside [%d, %d)", addr, lo, hi)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		l.Close()
	}
	if !ok {
		t.Log("no room outside the ephemeral range: ports from the kernel")
	}
}
