package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A request is logged once, at info, unless NoRequestLog is set; other
// lines still are.
func TestNoRequestLog(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		var logs lockedBuffer
		c := NewClient(Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), NoRequestLog: quiet}, nil)
		r := httptest.NewRequest(http.MethodGet, "/gpt2/resolve/main/config.json", nil)
		w := c.beginRequest(httptest.NewRecorder())
		w.route = routeResolve
		c.endRequest(w, r, true)
		c.log.Warn("something else")
		got := logs.String()
		if logged := strings.Contains(got, `"msg":"request"`); logged == quiet {
			t.Errorf("NoRequestLog %v: request line logged %v: %s", quiet, logged, got)
		}
		if !strings.Contains(got, "something else") {
			t.Errorf("NoRequestLog %v: other lines gone: %s", quiet, got)
		}
	}
}
