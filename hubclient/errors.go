package hubclient

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// Sentinel errors. Match them with errors.Is; a Hub error response is an
// *Error whose Is maps its X-Error-Code and status onto them.
var (
	// ErrEntryNotFound: 404 EntryNotFound (the file is not in the repo at
	// that commit; Error.RepoCommit says which commit).
	ErrEntryNotFound = errors.New("hub: entry not found")
	// ErrRevisionNotFound: 404 RevisionNotFound.
	ErrRevisionNotFound = errors.New("hub: revision not found")
	// ErrRepoNotFound: RepoNotFound (401 unauthenticated, 404 with a token).
	ErrRepoNotFound = errors.New("hub: repository not found")
	// ErrGatedRepo: GatedRepo (401 unauthenticated, 403 not approved). It
	// does not also match ErrRepoNotFound.
	ErrGatedRepo = errors.New("hub: gated repository")
	// ErrUnauthorized: a 401 without an error code (bad token), or a token
	// that cannot be sent at all.
	ErrUnauthorized = errors.New("hub: invalid credentials")
	// ErrRateLimited: 429.
	ErrRateLimited = errors.New("hub: rate limited")
	// ErrUnreachable: dial errors, timeouts, connection resets, stalled
	// bodies, and 502/503/504 once retries are exhausted. The cause is wrapped.
	ErrUnreachable = errors.New("hub: unreachable")
	// ErrRangeIgnored: the upstream answered 200 to a Range request that
	// did not start at 0.
	ErrRangeIgnored = errors.New("hub: upstream ignored Range")
	// ErrBadResponse: a response that breaks the Hub's contract, e.g. a
	// resolve 2xx/3xx without X-Repo-Commit, ETag or size, a wrong
	// Content-Range, or too many redirects.
	ErrBadResponse = errors.New("hub: malformed response")
	// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("hubclient: invalid config")
	// ErrInvalidRange: GetFile was asked for an impossible range.
	ErrInvalidRange = errors.New("hubclient: invalid range")
)

// Error is a Hub error response; it keeps what clients key on, so a cache
// can answer with the same status, X-Error-Code and X-Error-Message.
type Error struct {
	Status     int
	Code       string        // X-Error-Code
	Message    string        // X-Error-Message, else the JSON "error", else a short text body
	RepoCommit string        // X-Repo-Commit (EntryNotFound carries it)
	RetryAfter time.Duration // Retry-After, or the RateLimit reset
	RequestID  string        // X-Request-Id (or X-Amzn-Trace-Id)
}

// Error never includes a token: only the status, code, the Hub's message
// and its request id.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hub: ")
	b.WriteString(strconv.Itoa(e.Status))
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" [request id " + e.RequestID + "]")
	}
	return b.String()
}

// Is maps the error code and status to the package's sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrEntryNotFound:
		return e.Code == hf.CodeEntryNotFound
	case ErrRevisionNotFound:
		return e.Code == hf.CodeRevisionNotFound
	case ErrRepoNotFound:
		return e.Code == hf.CodeRepoNotFound
	case ErrGatedRepo:
		return e.Code == hf.CodeGatedRepo
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized && e.Code == ""
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrUnreachable:
		switch e.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

const (
	maxErrorBody    = 64 << 10 // bytes of an error body read
	maxErrorMessage = 1024     // bytes of a message kept
)

// newError reads (at most 64 KiB of) an error response, closes its body and
// turns it into an *Error.
func newError(resp *http.Response) *Error {
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}
	h := resp.Header
	e := &Error{
		Status:     resp.StatusCode,
		Code:       strings.TrimSpace(h.Get(hf.HeaderErrorCode)),
		Message:    strings.TrimSpace(h.Get(hf.HeaderErrorMessage)),
		RepoCommit: strings.TrimSpace(h.Get(hf.HeaderRepoCommit)),
		RetryAfter: retryAfter(h, time.Now()),
		RequestID:  strings.TrimSpace(h.Get(hf.HeaderRequestID)),
	}
	if e.RequestID == "" {
		e.RequestID = strings.TrimSpace(h.Get("X-Amzn-Trace-Id"))
	}
	if e.Message == "" {
		e.Message = bodyMessage(h.Get("Content-Type"), body)
	}
	e.Message = truncate(e.Message, maxErrorMessage)
	return e
}

// bodyMessage extracts the message of an error body the way
// huggingface_hub does: JSON "error" (string or list), "error_description",
// "message", "errors[].message"; else a non-HTML text body.
func bodyMessage(contentType string, body []byte) string {
	var j struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Message     string          `json:"message"`
		Errors      []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &j); err == nil {
		var s string
		var list []string
		switch {
		case json.Unmarshal(j.Error, &s) == nil && s != "":
			return s
		case json.Unmarshal(j.Error, &list) == nil && len(list) > 0:
			return strings.Join(list, "\n")
		case j.Description != "":
			return j.Description
		case j.Message != "":
			return j.Message
		}
		var msgs []string
		for _, e := range j.Errors {
			if e.Message != "" {
				msgs = append(msgs, e.Message)
			}
		}
		return strings.Join(msgs, "\n")
	}
	if strings.Contains(strings.ToLower(contentType), "html") || !utf8.Valid(body) {
		return ""
	}
	return strings.TrimSpace(string(body))
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
