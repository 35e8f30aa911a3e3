package raftstore

import (
	"errors"
	"strings"
	"testing"
)

func TestSealer(t *testing.T) {
	s := NewSealer("cluster-secret")
	sealed := s.Seal("hf_token")
	if !strings.HasPrefix(sealed, sealedPrefix) || strings.Contains(sealed, "hf_token") {
		t.Fatalf("sealed form %q", sealed)
	}
	if s.Seal("hf_token") == sealed {
		t.Fatal("two seals of one token are identical (nonce reuse)")
	}
	if s.Seal(sealed) != sealed || s.Seal("") != "" {
		t.Fatal("sealing must be idempotent and keep empty tokens empty")
	}
	if got, err := s.Open(sealed); err != nil || got != "hf_token" {
		t.Fatalf("open: %q %v", got, err)
	}
	if got, err := s.Open("plain"); err != nil || got != "plain" {
		t.Fatalf("a clear token: %q %v", got, err)
	}
	if _, err := NewSealer("other-secret").Open(sealed); !errors.Is(err, ErrUnseal) {
		t.Fatalf("another secret opened it: %v", err)
	}
	var none *Sealer
	if none.Seal("x") != "x" {
		t.Fatal("a nil sealer must store tokens as given")
	}
	if _, err := none.Open(sealed); !errors.Is(err, ErrUnseal) {
		t.Fatal("a nil sealer must refuse a sealed token")
	}
	if _, err := s.Open(sealedPrefix + "!!!"); !errors.Is(err, ErrUnseal) {
		t.Fatal("garbage opened")
	}
}
