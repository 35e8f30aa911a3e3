package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// byteRange is [start, end) of a representation.
type byteRange struct{ start, end int64 }

var (
	errRangeSyntax      = errors.New("invalid Range")
	errRangeUnsatisfied = errors.New("Range not satisfiable")
)

// parseRanges parses a Range header against a representation of size bytes,
// with the semantics of net/http's ServeContent: ends past EOF are clamped,
// suffix ranges count from the end, ranges starting at or past EOF are
// dropped, and none left is unsatisfiable.
func parseRanges(h string, size int64) ([]byteRange, error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, errRangeSyntax
	}
	var out []byteRange
	noOverlap := false
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return nil, errRangeSyntax
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		var r byteRange
		if first == "" {
			// Suffix: the last n bytes.
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 || last == "" {
				return nil, errRangeSyntax
			}
			if n == 0 {
				noOverlap = true
				continue
			}
			r = byteRange{max(size-n, 0), size}
		} else {
			s, err := strconv.ParseInt(first, 10, 64)
			if err != nil || s < 0 {
				return nil, errRangeSyntax
			}
			if s >= size {
				noOverlap = true
				continue
			}
			e := size - 1
			if last != "" {
				e, err = strconv.ParseInt(last, 10, 64)
				if err != nil || e < s {
					return nil, errRangeSyntax
				}
				e = min(e, size-1)
			}
			r = byteRange{s, e + 1}
		}
		out = append(out, r)
	}
	if len(out) == 0 && noOverlap {
		return nil, errRangeUnsatisfied
	}
	if len(out) == 0 {
		return nil, errRangeSyntax
	}
	return out, nil
}

// etagMatches reports whether an If-None-Match / If-Range value names etag.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// notModified answers 304 when the request's If-None-Match names etag.
func notModified(w http.ResponseWriter, r *http.Request, etag string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" || !etagMatches(inm, etag) {
		return false
	}
	h := w.Header()
	h.Del("Content-Type")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusNotModified)
	return true
}
