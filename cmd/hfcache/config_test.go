package main

import (
	"net"
	"testing"

	"github.com/hfcache/hfcache/node/membership"
)

func TestRaftAdmitsOnlyMembers(t *testing.T) {
	if isMemberAddr(nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}) {
		t.Fatal("admitted before membership started")
	}
	cfg := membership.DefaultConfig()
	cfg.Name = "solo"
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Meta = membership.Meta{ClientURL: "http://127.0.0.1:1", AdminURL: "http://127.0.0.1:2", RaftAddr: "127.0.0.1:3"}
	m, err := membership.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	if !isMemberAddr(m, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5555}) {
		t.Fatal("a member's address refused")
	}
	if isMemberAddr(m, &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 5555}) {
		t.Fatal("a stranger admitted")
	}
}
