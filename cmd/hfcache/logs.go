package main

import (
	"log"
	"log/slog"
)

// serverErrorLog is an http.Server's ErrorLog (TLS handshake failures,
// handler panics, accept errors) as warnings of the node's structured log,
// instead of unstructured lines on stderr.
func serverErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
