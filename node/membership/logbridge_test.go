package membership

import (
	"log/slog"
	"testing"
)

func TestLogBridge(t *testing.T) {
	sink := &logSink{}
	var suspected []string
	b := &logBridge{logger: slog.New(sink.handler()), onSuspect: func(n string) { suspected = append(suspected, n) }}
	std := newStdLogger(b)

	std.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:5000")
	std.Printf("[INFO] memberlist: Suspect node-7 has failed, no acks received")
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: b)")
	std.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:5001")
	std.Printf("[ERROR] memberlist: Failed to encrypt local state: x")
	std.Printf("Err: Could not set the deadline: x")

	for _, want := range []string{
		"DEBUG Stream connection from=127.0.0.1:5000 from=memberlist",
		"INFO Suspect node-7 has failed, no acks received from=memberlist",
		"WARN Refuting a suspect message (from: b) from=memberlist",
		"ERROR failed to receive: no installed keys could decrypt the message from=127.0.0.1:5001 from=memberlist hint=cluster secret mismatch?",
		"ERROR Failed to encrypt local state: x",
		"ERROR Could not set the deadline: x from=memberlist",
	} {
		if sink.count(want) != 1 {
			t.Errorf("no line %q in:\n%s", want, sink)
		}
	}
	if len(suspected) != 1 || suspected[0] != "node-7" {
		t.Errorf("suspected %v, want [node-7]", suspected)
	}
}

func TestLogBridgeSkipsDisabledLevels(t *testing.T) {
	var suspected []string
	b := &logBridge{
		logger:    slog.New(slog.DiscardHandler),
		onSuspect: func(n string) { suspected = append(suspected, n) },
	}
	newStdLogger(b).Printf("[INFO] memberlist: Suspect a b has failed, no acks received")
	if len(suspected) != 1 || suspected[0] != "a b" {
		t.Errorf("suspicion must be seen whatever the log level: %v", suspected)
	}
}
