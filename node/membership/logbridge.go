package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"regexp"
	"strings"
)

// logBridge is the io.Writer behind the *log.Logger memberlist writes to.
// It turns each "[LEVEL] memberlist: message" line into an slog record at
// that level, and watches for the line memberlist writes when it starts
// suspecting a member (see DESIGN.md).
type logBridge struct {
	logger    *slog.Logger
	onSuspect func(name string)
}

// suspectLine is memberlist's (v0.7.0, state.go probeNode) log line when a
// probe, direct and indirect, got no ack and the member becomes suspect.
var suspectLine = regexp.MustCompile(`^Suspect (.+) has failed, no acks received$`)

// newStdLogger is the *log.Logger memberlist is given.
func newStdLogger(b *logBridge) *log.Logger {
	return log.New(b, "", 0)
}

// Write takes one line (log.Logger writes each message in one call).
func (b *logBridge) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(bytes.TrimRight(p, "\n")), "\n") {
		b.line(line)
	}
	return len(p), nil
}

func (b *logBridge) line(line string) {
	level, msg := parseLevel(line)
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if msg == "" {
		return
	}
	if m := suspectLine.FindStringSubmatch(msg); m != nil && b.onSuspect != nil {
		b.onSuspect(m[1])
	}
	if !b.logger.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{slog.String("from", "memberlist")}
	if strings.Contains(strings.ToLower(msg), "crypt") {
		// "no installed keys could decrypt the message", "remote state is
		// encrypted and encryption is not configured", ...
		attrs = append(attrs, slog.String("hint", "cluster secret mismatch?"))
	}
	b.logger.LogAttrs(context.Background(), level, msg, attrs...)
}

// parseLevel reads memberlist's "[DEBUG] ", "[INFO] ", "[WARN] " or
// "[ERR] " prefix, or the bare "Err: " of its deadline errors (net.go); a
// line without one is logged at info.
func parseLevel(line string) (slog.Level, string) {
	if msg, ok := strings.CutPrefix(line, "Err: "); ok {
		return slog.LevelError, msg
	}
	if !strings.HasPrefix(line, "[") {
		return slog.LevelInfo, line
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return slog.LevelInfo, line
	}
	msg := strings.TrimLeft(line[end+1:], " ")
	switch strings.ToUpper(line[1:end]) {
	case "DEBUG", "TRACE":
		return slog.LevelDebug, msg
	case "INFO":
		return slog.LevelInfo, msg
	case "WARN", "WARNING":
		return slog.LevelWarn, msg
	case "ERR", "ERROR":
		return slog.LevelError, msg
	default:
		return slog.LevelInfo, line
	}
}
