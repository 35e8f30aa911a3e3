package raftstore

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type recordHandler struct {
	mu      sync.Mutex
	level   slog.Level
	records []slog.Record
	attrs   []slog.Attr
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.AddAttrs(h.attrs...)
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler2{h, as}
}
func (h *recordHandler) WithGroup(string) slog.Handler { return h }

type recordHandler2 struct {
	*recordHandler
	extra []slog.Attr
}

func (h *recordHandler2) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.extra...)
	return h.recordHandler.Handle(ctx, r)
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

func TestHclogAdapter(t *testing.T) {
	h := &recordHandler{level: slog.LevelDebug}
	var l hclog.Logger = newHclog(slog.New(h), "raft")
	l = l.Named("snapshot").With("node", "n1")
	l.Trace("too fine")
	l.Debug("dbg", "k", 1)
	l.Info("info")
	l.Warn("careful")
	l.Error("broken", "error", "x")
	if l.IsTrace() || !l.IsDebug() {
		t.Errorf("IsTrace=%v IsDebug=%v", l.IsTrace(), l.IsDebug())
	}
	want := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	if len(h.records) != len(want) {
		t.Fatalf("%d records", len(h.records))
	}
	for i, r := range h.records {
		if r.Level != want[i] {
			t.Errorf("record %d level %v, want %v", i, r.Level, want[i])
		}
		a := attrs(r)
		if a["logger"] != "raft.snapshot" || a["node"] != "n1" {
			t.Errorf("record %d attrs %v", i, a)
		}
	}
	if l.Name() != "raft.snapshot" || l.ResetNamed("x").Name() != "x" {
		t.Errorf("names: %q", l.Name())
	}
	l.SetLevel(hclog.Warn)
	l.Info("dropped")
	if len(h.records) != 4 || l.GetLevel() != hclog.Warn {
		t.Errorf("SetLevel(Warn) not honoured")
	}
	l.SetLevel(hclog.NoLevel)

	std := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	std.Print("[ERR] raft: oops")
	last := h.records[len(h.records)-1]
	if last.Level != slog.LevelError || !strings.HasPrefix(last.Message, "raft: oops") {
		t.Errorf("standard logger: %v %q", last.Level, last.Message)
	}
}
