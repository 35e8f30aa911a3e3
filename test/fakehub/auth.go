package fakehub

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// Messages the Hub sends (protocol §5.2).
const (
	msgInvalidCredentials = "Invalid credentials in Authorization header"
	msgRepoNotFound       = "Repository not found"
	msgEntryNotFound      = "Entry not found"
	msgDisabled           = "Access to this resource is disabled."
)

// AddToken registers a valid access token of user.
func (h *Hub) AddToken(token, user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens[token] = user
}

// RemoveToken makes a token invalid again.
func (h *Hub) RemoveToken(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.tokens, token)
}

// Grant lets the user of token read a gated or private repository. The token
// must have been added; the grant follows the repository through renames.
func (h *Hub) Grant(token string, t hf.RepoType, id string) { h.setGrant(token, t, id, true) }

// Revoke withdraws a Grant.
func (h *Hub) Revoke(token string, t hf.RepoType, id string) { h.setGrant(token, t, id, false) }

func (h *Hub) setGrant(token string, t hf.RepoType, id string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	user, ok := h.tokens[token]
	if !ok {
		panic("fakehub: Grant/Revoke of an unknown token; call AddToken first")
	}
	rp := h.mustRepo(t, id)
	if h.grants[user] == nil {
		h.grants[user] = map[string]bool{}
	}
	if on {
		h.grants[user][rp.objID] = true
	} else {
		delete(h.grants[user], rp.objID)
	}
}

// identify returns the user of the request's token ("" = anonymous). An
// unknown token is answered 401 at once, as the Hub does on every route.
func (h *Hub) identify(w http.ResponseWriter, r *http.Request) (user string, ok bool) {
	a := strings.TrimSpace(r.Header.Get("Authorization"))
	if a == "" {
		return "", true
	}
	scheme, tok, _ := strings.Cut(a, " ")
	tok = strings.TrimSpace(tok)
	if strings.EqualFold(scheme, "Bearer") && tok != "" {
		h.mu.RLock()
		user, found := h.tokens[tok]
		h.mu.RUnlock()
		if found {
			return user, true
		}
	}
	h.writeError(w, r, http.StatusUnauthorized, "", msgInvalidCredentials)
	return "", false
}

// granted reports whether user may read a restricted repo; h.mu is held.
func (h *Hub) granted(user string, rp *repo) bool {
	return user != "" && h.grants[user][rp.objID]
}

// access is what a route reads: metadata (info, tree, paths-info, refs,
// commits: public for gated repos) or files (resolve, raw, xet token).
type access int

const (
	accessMeta access = iota
	accessFiles
)

// authorize answers the request with the Hub's error if user may not read rp
// (nil = no such repo) at this level, and reports whether it may.
func (h *Hub) authorize(w http.ResponseWriter, r *http.Request, rp *repo, user string, level access) bool {
	h.mu.RLock()
	missing := rp == nil || (rp.private && !h.granted(user, rp))
	var disabled, gated bool
	var typ hf.RepoType
	var id string
	if !missing {
		disabled = rp.disabled
		gated = rp.gated != "" && level == accessFiles && !h.granted(user, rp)
		typ, id = rp.typ, rp.id
	}
	h.mu.RUnlock()
	switch {
	case missing && user == "":
		h.writeError(w, r, http.StatusUnauthorized, hf.CodeRepoNotFound, msgRepoNotFound)
	case missing:
		h.writeError(w, r, http.StatusNotFound, hf.CodeRepoNotFound, msgRepoNotFound)
	case disabled:
		h.writeError(w, r, http.StatusForbidden, "", msgDisabled)
	case gated && user == "":
		h.writeError(w, r, http.StatusUnauthorized, hf.CodeGatedRepo,
			"Access to "+string(typ)+" "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
	case gated:
		h.writeError(w, r, http.StatusForbidden, hf.CodeGatedRepo,
			"Access to "+string(typ)+" "+id+" is restricted and you are not in the authorized list. Visit "+
				h.baseURL(r)+"/"+typ.URLPrefix()+id+" to ask for access.")
	default:
		return true
	}
	return false
}

// writeError sends the Hub's error shape: JSON {"error": msg}, X-Error-Code
// (when code != ""), X-Error-Message; X-Request-Id is set by the middleware.
func (h *Hub) writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	hd := w.Header()
	if code != "" {
		hd.Set(hf.HeaderErrorCode, code)
	}
	hd.Set(hf.HeaderErrorMessage, msg)
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeJSON sends a 200 JSON document.
func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// whoami answers /api/whoami-v2.
func (h *Hub) whoami(w http.ResponseWriter, r *http.Request) {
	user, ok := h.identify(w, r)
	if !ok {
		return
	}
	if user == "" {
		h.writeError(w, r, http.StatusUnauthorized, "", "Invalid username or password.")
		return
	}
	writeJSON(w, r, map[string]any{
		"type": "user", "id": user, "name": user, "fullname": user, "isPro": false, "orgs": []any{},
		"auth": map[string]any{"type": "access_token", "accessToken": map[string]any{"displayName": "fakehub", "role": "read"}},
	})
}
