package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// Error codes this cache adds to the Hub's own (X-Error-Code). Clients treat
// unknown codes by status: 5xx is retried by huggingface_hub.
const (
	codeUpstreamUnreachable = "UpstreamUnreachable"
	codeBadUpstream         = "BadUpstreamResponse"
	codeBadRequest          = "BadRequest"
	codeMethodNotAllowed    = "MethodNotAllowed"
	codeNotFound            = "NotFound"
)

var (
	errNotFound         = errors.New("httpapi: no such route")
	errMethodNotAllowed = errors.New("httpapi: the cache is a read-only mirror")
)

// hubError is what a client sees for err: the Hub's status, X-Error-Code and
// message. This is the one place errors become HTTP.
func hubError(err error) (status int, code, msg, commit string) {
	var he *hubclient.Error
	switch {
	case errors.As(err, &he):
		status, code, msg, commit = he.Status, he.Code, he.Message, he.RepoCommit
		if msg == "" {
			msg = http.StatusText(he.Status)
		}
		return
	case errors.Is(err, node.ErrXetToken):
		return http.StatusUnauthorized, "XetTokenInvalid", "Invalid or expired Xet access token: ask the token route for a new one", ""
	case errors.Is(err, node.ErrXetURL):
		return http.StatusForbidden, "XetURLInvalid", "Invalid or expired xorb URL, or a range outside it: ask for the reconstruction again", ""
	case errors.Is(err, node.ErrXetHidden):
		return http.StatusNotFound, codeNotFound, "Xet is not available through this cache", ""
	case errors.Is(err, hf.ErrInvalid):
		return http.StatusBadRequest, codeBadRequest, err.Error(), ""
	case errors.Is(err, errNotFound), errors.Is(err, node.ErrNotCached):
		return http.StatusNotFound, codeNotFound, "Not Found", ""
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method not allowed: this is a read-only Hugging Face Hub cache", ""
	case errors.Is(err, node.ErrUnknownRemote):
		return http.StatusServiceUnavailable, "RemoteNotConfigured", "This distribution's remote is not configured on this node yet", ""
	case errors.Is(err, errDraining):
		return http.StatusServiceUnavailable, "ServiceUnavailable", "This cache node is shutting down; retry (another node serves)", ""
	case errors.Is(err, node.ErrBusy), errors.Is(err, errTooManyRequests):
		return http.StatusTooManyRequests, "TooManyRequests", "Too many requests in progress; retry shortly", ""
	case errors.Is(err, hubclient.ErrUnreachable):
		return http.StatusGatewayTimeout, codeUpstreamUnreachable, "The Hugging Face Hub is unreachable and the content is not cached", ""
	case errors.Is(err, hubclient.ErrBadResponse), errors.Is(err, node.ErrFillFailed):
		return http.StatusBadGateway, codeBadUpstream, "The Hugging Face Hub sent an invalid response", ""
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, codeUpstreamUnreachable, "The request timed out", ""
	}
	return http.StatusInternalServerError, "", "Internal error", ""
}

// writeError answers in the Hub's error shape: X-Error-Code, X-Error-Message
// and a JSON {"error": "..."} body; EntryNotFound also carries X-Repo-Commit
// so clients can cache the file's absence.
func writeError(w http.ResponseWriter, err error) {
	status, code, msg, commit := hubError(err)
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "ETag", hf.HeaderLinkedETag, hf.HeaderLinkedSize, "Content-Disposition", "Accept-Ranges", hf.HeaderRepoCommit} {
		h.Del(k)
	}
	if code != "" {
		h.Set(hf.HeaderErrorCode, code)
	}
	h.Set(hf.HeaderErrorMessage, headerSafe(msg))
	if commit != "" {
		h.Set(hf.HeaderRepoCommit, commit)
	}
	var he *hubclient.Error
	if errors.As(err, &he) && he.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(he.RetryAfter.Seconds()+0.5)))
	}
	if status == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "2")
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// headerSafe makes a message fit in one header line.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}
