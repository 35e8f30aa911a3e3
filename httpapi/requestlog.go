package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// loggedResponse is the ResponseWriter every client-port handler writes
// to: it remembers the status and counts the body bytes for the request's
// log line and metrics, and what the handler learned about the request
// (route, distribution, repository, revision, path). It passes ReadFrom
// through, so sendfile and splice still reach the connection, and Unwrap
// for http.ResponseController.
type loggedResponse struct {
	http.ResponseWriter
	id     string
	idv    [1]string // X-Request-Id's value slice: part of this allocation, not one of its own
	start  time.Time
	status int
	bytes  int64
	wrote  bool

	route routeID
	dist  string
	repo  hf.Repo
	rev   string
	path  string
}

func (w *loggedResponse) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggedResponse) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy hand the source to the connection's ReadFrom
// (sendfile from a blob file, splice from an owner's socket).
func (w *loggedResponse) ReadFrom(src io.Reader) (int64, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, src)
	}
	w.bytes += n
	return n, err
}

// Flush implements http.Flusher.
func (w *loggedResponse) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wrote {
			w.status, w.wrote = http.StatusOK, true
		}
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (w *loggedResponse) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// annotate records what a handler parsed about the request, for its log
// line.
func annotate(w http.ResponseWriter, repo hf.Repo, rev, path string) {
	if lr, ok := w.(*loggedResponse); ok {
		lr.repo, lr.rev, lr.path = repo, rev, path
	}
}

// setRoute records a parsed client route and its distribution.
func (w *loggedResponse) setRoute(d Distribution, rt route) {
	w.route, w.dist = routeOf(rt), d.Name
	switch {
	case rt.file != nil:
		w.repo, w.rev, w.path = rt.file.Repo, string(rt.file.Rev), string(rt.file.Path)
	case rt.api != nil:
		w.repo, w.rev, w.path = rt.api.Repo, string(rt.api.Rev), rt.api.Rest
	}
}

// beginRequest wraps w for one request and gives it its request id.
func (c *Client) beginRequest(w http.ResponseWriter) *loggedResponse {
	c.cfg.Metrics.begin()
	return &loggedResponse{ResponseWriter: w, id: newRequestID(), start: time.Now(), status: http.StatusOK}
}

// endRequest logs the request and counts it. It runs deferred, also when
// the handler aborted the response (completed false: panic with
// http.ErrAbortHandler, which keeps unwinding).
func (c *Client) endRequest(w *loggedResponse, r *http.Request, completed bool) {
	took := time.Since(w.start)
	h := w.Header()
	relayed := first(h, headerVia) != ""
	c.cfg.Metrics.observe(w, relayed, !completed, took.Seconds())
	c.recordActivity(w, r, relayed, completed)
	ctx := r.Context()
	if c.cfg.NoRequestLog || !c.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	// One line per request. Never the query (a CDN location is signed)
	// nor any header: the Authorization token stays out of the logs.
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("request_id", w.id),
		slog.String("method", r.Method),
		slog.String("route", w.route.String()),
		slog.String("distribution", w.dist),
	)
	if w.repo.ID != "" {
		attrs = append(attrs,
			slog.String("repo_type", string(w.repo.Type)),
			slog.String("repo", w.repo.ID),
			slog.String("revision", w.rev),
			slog.String("path", w.path),
		)
	} else {
		attrs = append(attrs, slog.String("url", r.URL.EscapedPath()))
	}
	attrs = append(attrs,
		slog.Int("status", w.status),
		slog.Int64("bytes", w.bytes),
		slog.String("source", h.Get(headerSource)),
		slog.Duration("duration", took),
	)
	if relayed {
		attrs = append(attrs, slog.String("owner", h.Get(headerNode)))
	}
	if !completed {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// Activity is what the status page learns from the client port; the node
// (node.Node) satisfies it.
type Activity interface {
	RecordServed(repo hf.Repo, bytes int64, hit bool)
	RecordError(e node.RecentError)
}

var _ Activity = (*node.Node)(nil)

// recordActivity tells the status page about a finished request: a file
// download served (by repository), or a 5xx or aborted response.
func (c *Client) recordActivity(w *loggedResponse, r *http.Request, relayed, completed bool) {
	a := c.cfg.Activity
	if a == nil {
		return
	}
	if completed && w.route == routeResolve && r.Method == http.MethodGet && w.repo.ID != "" && w.status >= 200 && w.status < 300 {
		a.RecordServed(w.repo, w.bytes, !relayed && first(w.Header(), headerSource) == node.SourceDisk)
	}
	if w.status >= 500 || !completed {
		e := node.RecentError{Kind: "request", Status: w.status, Path: w.path, Detail: r.Method + " " + w.route.String()}
		if w.repo.ID != "" {
			e.Repo = w.repo.Key()
		} else {
			e.Path = r.URL.EscapedPath()
		}
		if !completed {
			e.Detail += ", aborted mid-body"
		}
		a.RecordError(e)
	}
}
