package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeAdmin is an in-memory admin API following the contract the CLI is
// written against: versions, If-Match, a write-only remote token, bearer
// auth when a token is configured, and the error shape.
type fakeAdmin struct {
	mu       sync.Mutex
	mux      *http.ServeMux
	token    string // admin token required when non-empty
	index    uint64
	objects  map[string]map[string]map[string]any // kind → name → stored fields (remotes keep "token")
	requests []fakeRequest
	leader   string
	// hook, when set, sees every authorized request first (with mu held)
	// and answers it by returning true.
	hook func(w http.ResponseWriter, r *http.Request) bool
}

type fakeRequest struct {
	Method, Path, IfMatch, Auth string
	Body                        map[string]any
}

func newFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	f := &fakeAdmin{mux: http.NewServeMux(), leader: "n1", objects: map[string]map[string]map[string]any{
		"remotes": {}, "repositories": {}, "distributions": {},
	}}
	f.mux.HandleFunc("GET /v1/cluster/members", func(w http.ResponseWriter, r *http.Request) {
		members := []map[string]any{}
		for _, n := range []string{"n1", "n2", "n3"} {
			members = append(members, map[string]any{"name": n, "state": "alive", "self": n == "n1", "suffrage": "voter",
				"leader": n == f.leader, "client_url": "http://" + n + ":8080", "admin_url": "http://" + n + ":8081",
				"gossip_addr": n + ":7946", "raft_addr": n + ":7947", "version": "dev"})
		}
		members = append(members, map[string]any{"name": "n4", "state": "suspect", "client_url": "http://n4:8080"})
		fakeJSON(w, http.StatusOK, map[string]any{"node": "n1", "members": members})
	})
	f.mux.HandleFunc("GET /v1/cluster/raft", func(w http.ResponseWriter, r *http.Request) {
		fakeJSON(w, http.StatusOK, map[string]any{"state": "leader", "term": 3, "last_index": 42, "applied_index": 41,
			"commit_index": 42, "leader_id": f.leader, "leader_addr": "127.0.0.1:7947", "servers": []map[string]any{
				{"id": "n1", "address": "127.0.0.1:7947", "suffrage": "voter", "leader": f.leader == "n1"},
				{"id": "n2", "address": "127.0.0.2:7947", "suffrage": "nonvoter", "leader": f.leader == "n2"},
			}})
	})
	f.mux.HandleFunc("POST /v1/cluster/transfer-leadership", func(w http.ResponseWriter, r *http.Request) {
		f.leader = "n2"
		fakeJSON(w, http.StatusOK, map[string]any{"leader": f.leader})
	})
	f.mux.HandleFunc("GET /v1/{kind}", func(w http.ResponseWriter, r *http.Request) {
		objs, ok := f.objects[r.PathValue("kind")]
		if !ok {
			fakeError(w, http.StatusNotFound, "not_found", "no such kind", nil)
			return
		}
		out := []map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(objs)) {
			out = append(out, fakeView(objs[name]))
		}
		fakeJSON(w, http.StatusOK, out)
	})
	f.mux.HandleFunc("GET /v1/{kind}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if obj := f.find(w, r); obj != nil {
			fakeJSON(w, http.StatusOK, fakeView(obj))
		}
	})
	f.mux.HandleFunc("DELETE /v1/{kind}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if obj := f.find(w, r); obj != nil {
			delete(f.objects[r.PathValue("kind")], r.PathValue("name"))
			f.index++
			w.Header().Set("X-Hfcache-Index", strconv.FormatUint(f.index, 10))
			fakeJSON(w, http.StatusOK, map[string]any{"index": f.index})
		}
	})
	f.mux.HandleFunc("PUT /v1/{kind}/{name}", f.put)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := fakeRequest{Method: r.Method, Path: r.URL.Path, IfMatch: r.Header.Get("If-Match"), Auth: r.Header.Get("Authorization")}
	if len(body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&rec.Body); err != nil {
			fakeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error(), nil)
			return
		}
	}
	f.requests = append(f.requests, rec)
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		fakeError(w, http.StatusUnauthorized, "unauthorized", "admin token required", nil)
		return
	}
	if f.hook != nil && f.hook(w, r) {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mux.ServeHTTP(w, r)
}

func (f *fakeAdmin) find(w http.ResponseWriter, r *http.Request) map[string]any {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	obj := f.objects[kind][name]
	if obj == nil {
		fakeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("raftstore: not found: %s %q", kind, name), nil)
	}
	return obj
}

func (f *fakeAdmin) put(w http.ResponseWriter, r *http.Request) {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	objs, ok := f.objects[kind]
	if !ok {
		fakeError(w, http.StatusNotFound, "not_found", "no such kind", nil)
		return
	}
	var in map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		fakeError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	old := objs[name]
	if err := fakeCheckTypes(kind, in); err != "" {
		fakeError(w, http.StatusBadRequest, "bad_request", err, nil)
		return
	}
	singular := map[string]string{"remotes": "remote", "repositories": "repository", "distributions": "distribution"}[kind]
	if m := r.Header.Get("If-Match"); m != "" {
		cur := "0"
		if old != nil {
			cur = fmt.Sprint(old["version"])
		}
		if m != cur {
			fakeError(w, http.StatusConflict, "conflict", fmt.Sprintf("raftstore: conflict: %s %q is at version %s, not %s", singular, name, cur, m), nil)
			return
		}
	}
	if fields := fakeValidate(kind, in); len(fields) > 0 {
		var msg []string
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			msg = append(msg, k+": "+fields[k])
		}
		fakeError(w, http.StatusBadRequest, "validation", "raftstore: invalid: "+strings.Join(msg, "; "), fields)
		return
	}
	in["name"] = name
	delete(in, "token_set")
	if _, given := in["token"]; !given && old != nil && old["token"] != nil {
		in["token"] = old["token"] // write-only: kept unless a new one is sent
	}
	f.index++
	in["version"] = f.index
	objs[name] = in
	w.Header().Set("X-Hfcache-Index", strconv.FormatUint(f.index, 10))
	fakeJSON(w, http.StatusOK, fakeView(in))
}

func fakeValidate(kind string, in map[string]any) map[string]string {
	fields := map[string]string{}
	str := func(k string) string { s, _ := in[k].(string); return s }
	switch kind {
	case "remotes":
		if u := str("url"); !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			fields["url"] = "must be an http(s) URL"
		}
		if p := str("policy"); p != "" && p != "on_demand" && p != "streamed" && p != "immediate" {
			fields["policy"] = "must be on_demand, streamed or immediate"
		}
	case "repositories":
		if str("remote") == "" {
			fields["remote"] = "required"
		}
		if q := str("quota"); q != "" {
			if _, err := parseSize(q); err != nil {
				fields["quota"] = err.Error()
			}
		}
	case "distributions":
		if a := str("access"); a != "" && a != "caller" && a != "remote" {
			fields["access"] = "must be caller or remote"
		}
	}
	return fields
}

// fakeFields are the fields the server knows, with their JSON types; like
// the real one it rejects others.
var fakeFields = map[string]map[string]string{
	"remotes": {"name": "string", "url": "string", "token": "string", "token_set": "bool", "policy": "string",
		"ref_ttl": "string", "include": "array", "exclude": "array", "xet": "string", "version": "number"},
	"repositories":  {"name": "string", "remote": "string", "warm": "array", "quota": "string", "version": "number"},
	"distributions": {"name": "string", "base_path": "string", "repository": "string", "access": "string", "version": "number"},
}

func fakeCheckTypes(kind string, in map[string]any) string {
	for k, v := range in {
		var got string
		switch v.(type) {
		case string:
			got = "string"
		case bool:
			got = "bool"
		case []any:
			got = "array"
		case json.Number:
			got = "number"
		}
		if want, ok := fakeFields[kind][k]; !ok {
			return fmt.Sprintf("json: unknown field %q", k)
		} else if got != want {
			return fmt.Sprintf("json: cannot unmarshal %s into field %s of type %s", got, k, want)
		}
	}
	return ""
}

// fakeView is an object as the API returns it: a remote's token becomes
// token_set.
func fakeView(obj map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		out[k] = v
	}
	if _, isRemote := obj["url"]; isRemote {
		delete(out, "token")
		out["token_set"] = obj["token"] != nil && obj["token"] != ""
	}
	return out
}

func fakeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fakeError(w http.ResponseWriter, status int, code, msg string, fields map[string]string) {
	fakeJSON(w, status, map[string]any{"error": msg, "code": code, "fields": fields})
}

// last returns the last request with this method.
func (f *fakeAdmin) last(t *testing.T, method string) fakeRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.requests) - 1; i >= 0; i-- {
		if f.requests[i].Method == method {
			return f.requests[i]
		}
	}
	t.Fatalf("no %s request", method)
	return fakeRequest{}
}

func (f *fakeAdmin) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, r.Method)
	}
	return out
}

// locked runs fn with the fake's lock held, for changing its state while
// the server runs.
func (f *fakeAdmin) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeAdmin) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = nil
}

// cliEnv clears the environment the CLI reads, so the host's settings do not
// leak into tests.
func cliEnv(t *testing.T) {
	for _, k := range []string{"HFCACHE_ADDR", "HFCACHE_ADMIN_TOKEN", "HFCACHE_OUTPUT", "HFCACHE_TIMEOUT"} {
		t.Setenv(k, "")
	}
}

// runCLI runs the real command tree.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

// mustRun runs and fails the test on an error.
func mustRun(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := runCLI(t, stdin, append(args, "--addr", addr)...)
	if err != nil {
		t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	return out, errOut
}

// tableLines splits table output into rows of fields.
func tableLines(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func TestRemoteLifecycle(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)

	out, errOut := mustRun(t, addr, "", "remote", "create", "hub", "--url", "https://hub.example", "--token", "hf_SECRET",
		"--policy", "on_demand", "--ref-ttl", "90s", "--include", "org/*", "--include", "other/*", "--xet", "hidden")
	put := f.last(t, "PUT")
	if put.Path != "/v1/remotes/hub" || put.IfMatch != "0" {
		t.Errorf("create sent %s If-Match %q; want /v1/remotes/hub with If-Match 0", put.Path, put.IfMatch)
	}
	want := map[string]any{"name": "hub", "url": "https://hub.example", "token": "hf_SECRET", "policy": "on_demand",
		"ref_ttl": "1m30s", "include": []any{"org/*", "other/*"}, "xet": "hidden"}
	if !reflect.DeepEqual(put.Body, want) {
		t.Errorf("create body %v, want %v", put.Body, want)
	}
	rows := tableLines(out)
	if len(rows) != 2 || !slices.Equal(rows[0], []string{"NAME", "URL", "POLICY", "REF_TTL", "XET", "TOKEN", "INCLUDE", "EXCLUDE", "VERSION"}) ||
		!slices.Equal(rows[1], []string{"hub", "https://hub.example", "on_demand", "1m30s", "hidden", "set", "org/*,other/*", "-", "1"}) {
		t.Errorf("create table:\n%s", out)
	}
	if errOut != "applied at index 1\n" {
		t.Errorf("stderr %q, want the applied index", errOut)
	}

	mustRun(t, addr, "", "remote", "create", "mirror", "--url", "http://mirror.lab")
	out, _ = mustRun(t, addr, "", "remote", "list")
	rows = tableLines(out)
	if len(rows) != 3 || rows[1][0] != "hub" || rows[2][0] != "mirror" || rows[2][5] != "-" {
		t.Errorf("list table:\n%s", out)
	}

	out, _ = mustRun(t, addr, "", "remote", "get", "hub", "-o", "json")
	got := decodeJSON[map[string]any](t, out)
	if got["token_set"] != true || got["version"] != 1.0 || got["url"] != "https://hub.example" {
		t.Errorf("get -o json: %s", out)
	}
	if _, ok := got["token"]; ok {
		t.Errorf("get -o json shows a token field: %s", out)
	}

	// A partial update: only --policy changes, everything else (and the
	// write-only token) is kept, and the version read is sent as If-Match.
	f.reset()
	out, errOut = mustRun(t, addr, "", "remote", "update", "hub", "--policy", "streamed")
	if m := f.methods(); !slices.Equal(m, []string{"GET", "PUT"}) {
		t.Fatalf("update made %v, want GET then PUT", m)
	}
	put = f.last(t, "PUT")
	if put.IfMatch != "1" {
		t.Errorf("update If-Match %q, want the version read (1)", put.IfMatch)
	}
	want = map[string]any{"name": "hub", "url": "https://hub.example", "policy": "streamed", "ref_ttl": "1m30s",
		"include": []any{"org/*", "other/*"}, "xet": "hidden", "token_set": true, "version": json.Number("1")}
	if !reflect.DeepEqual(put.Body, want) {
		t.Errorf("update body %v, want %v", put.Body, want)
	}
	if rows := tableLines(out); rows[1][2] != "streamed" || rows[1][5] != "set" || rows[1][8] != "3" {
		t.Errorf("update table:\n%s", out)
	}
	if errOut != "applied at index 3\n" {
		t.Errorf("update stderr %q", errOut)
	}

	// Lists are cleared by an empty value.
	mustRun(t, addr, "", "remote", "update", "hub", "--include", "")
	if put = f.last(t, "PUT"); !reflect.DeepEqual(put.Body["include"], []any{}) {
		t.Errorf("--include '' sent include %v, want []", put.Body["include"])
	}

	out, errOut = mustRun(t, addr, "", "remote", "delete", "mirror")
	if out != "deleted remote \"mirror\"\n" || errOut != "applied at index 5\n" {
		t.Errorf("delete: stdout %q stderr %q", out, errOut)
	}
	_, _, err := runCLI(t, "", "remote", "get", "mirror", "--addr", addr)
	if err == nil || err.Error() != `remote "mirror" not found` || exitCode(err) != 1 {
		t.Errorf("get after delete: %v (exit %d)", err, exitCode(err))
	}
}

func TestRepositoryLifecycle(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)

	out, _ := mustRun(t, addr, "", "repository", "create", "models", "--remote", "hub", "--quota", "500GiB",
		"--warm", "model:org/a@main:*.json,*.safetensors", "--warm", "dataset:org/b")
	put := f.last(t, "PUT")
	want := map[string]any{"name": "models", "remote": "hub", "quota": "500GiB", "warm": []any{
		map[string]any{"type": "model", "repo": "org/a", "revision": "main", "include": []any{"*.json", "*.safetensors"}},
		map[string]any{"type": "dataset", "repo": "org/b"},
	}}
	if put.IfMatch != "0" || !reflect.DeepEqual(put.Body, want) {
		t.Errorf("create sent If-Match %q body %v\nwant %v", put.IfMatch, put.Body, want)
	}
	rows := tableLines(out)
	if !slices.Equal(rows[0], []string{"NAME", "REMOTE", "QUOTA", "WARM", "VERSION"}) ||
		!slices.Equal(rows[1], []string{"models", "hub", "500GiB", "model:org/a@main:*.json,*.safetensors", "dataset:org/b", "1"}) {
		t.Errorf("create table:\n%s", out)
	}

	out, _ = mustRun(t, addr, "", "repository", "update", "models", "--quota", "1TiB")
	put = f.last(t, "PUT")
	if put.IfMatch != "1" || put.Body["quota"] != "1TiB" || !reflect.DeepEqual(put.Body["warm"], want["warm"]) {
		t.Errorf("update sent If-Match %q body %v", put.IfMatch, put.Body)
	}
	if !strings.Contains(out, " 1TiB ") {
		t.Errorf("update table:\n%s", out)
	}

	mustRun(t, addr, "", "repository", "update", "models", "--warm", "")
	if put = f.last(t, "PUT"); !reflect.DeepEqual(put.Body["warm"], []any{}) || put.Body["remote"] != "hub" {
		t.Errorf("--warm '' sent %v", put.Body)
	}

	out, _ = mustRun(t, addr, "", "repository", "list", "-o", "json")
	list := decodeJSON[[]map[string]any](t, out)
	if len(list) != 1 || list[0]["name"] != "models" || list[0]["quota"] != "1TiB" {
		t.Errorf("list -o json: %s", out)
	}

	mustRun(t, addr, "", "repository", "delete", "models")
	if d := f.last(t, "DELETE"); d.Path != "/v1/repositories/models" {
		t.Errorf("delete path %s", d.Path)
	}
	out, errOut := mustRun(t, addr, "", "repository", "list")
	if out != "" || errOut != "no repositories\n" {
		t.Errorf("empty list: stdout %q stderr %q", out, errOut)
	}
}

func TestDistributionLifecycle(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)

	out, _ := mustRun(t, addr, "", "distribution", "create", "hf", "--base-path", "/hf", "--repository", "models", "--access", "caller")
	rows := tableLines(out)
	if !slices.Equal(rows[0], []string{"NAME", "BASE_PATH", "REPOSITORY", "ACCESS", "VERSION"}) ||
		!slices.Equal(rows[1], []string{"hf", "/hf", "models", "caller", "1"}) {
		t.Errorf("create table:\n%s", out)
	}

	// An empty base path is a value (serve at the root), not "unchanged".
	out, _ = mustRun(t, addr, "", "distribution", "update", "hf", "--base-path", "")
	put := f.last(t, "PUT")
	if put.IfMatch != "1" || put.Body["base_path"] != "" || put.Body["repository"] != "models" || put.Body["access"] != "caller" {
		t.Errorf("update sent If-Match %q body %v", put.IfMatch, put.Body)
	}
	if !strings.Contains(out, "(root)") {
		t.Errorf("update table:\n%s", out)
	}

	out, errOut := mustRun(t, addr, "", "distribution", "get", "hf", "-o", "json")
	if got := decodeJSON[map[string]any](t, out); got["base_path"] != "" || got["version"] != 2.0 || errOut != "" {
		t.Errorf("get -o json: %s (stderr %q)", out, errOut)
	}

	out, errOut = mustRun(t, addr, "", "distribution", "delete", "hf", "-o", "json")
	if got := decodeJSON[map[string]any](t, out); got["index"] != 3.0 || errOut != "" {
		t.Errorf("delete -o json: %s (stderr %q)", out, errOut)
	}
}

func TestRemoteTokenNeverShown(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)
	const secret = "hf_FROM_STDIN_123"

	out, errOut := mustRun(t, addr, secret+"\n", "remote", "create", "hub", "--url", "https://hub.example", "--token-stdin")
	if got := f.last(t, "PUT").Body["token"]; got != secret {
		t.Errorf("--token-stdin sent token %v, want %q", got, secret)
	}
	outputs := []string{out, errOut}
	out, errOut = mustRun(t, addr, secret+"\n", "remote", "update", "hub", "--token-stdin", "-o", "json")
	outputs = append(outputs, out, errOut)

	// Even a server that wrongly returns the token does not get it printed.
	leaky := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		view := fakeView(f.objects["remotes"]["hub"])
		view["token"] = secret
		if r.URL.Path == "/v1/remotes" {
			fakeJSON(w, http.StatusOK, []any{view})
		} else {
			fakeJSON(w, http.StatusOK, view)
		}
		return true
	}
	f.locked(func() { f.hook = leaky })
	for _, args := range [][]string{
		{"remote", "get", "hub"}, {"remote", "get", "hub", "-o", "json"},
		{"remote", "list"}, {"remote", "list", "-o", "json"},
	} {
		out, errOut := mustRun(t, addr, "", args...)
		outputs = append(outputs, out, errOut)
	}
	for _, o := range outputs {
		if strings.Contains(o, secret) {
			t.Errorf("output shows the token:\n%s", o)
		}
	}
	if !strings.Contains(outputs[0], " set ") {
		t.Errorf("table does not say the token is set:\n%s", outputs[0])
	}

	// An empty standard input is a usage error, not an empty token.
	f.locked(func() { f.hook = nil })
	_, _, err := runCLI(t, "\n", "remote", "update", "hub", "--token-stdin", "--addr", addr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "standard input is empty") {
		t.Errorf("empty stdin: %v", err)
	}
}

func TestErrorMessages(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)
	mustRun(t, addr, "", "remote", "create", "hub", "--url", "https://hub.example")

	reply := func(method string, status int, body string, header ...string) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != method {
				return false
			}
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
			return true
		}
	}
	cases := []struct {
		name string
		hook func(http.ResponseWriter, *http.Request) bool
		args []string
		want []string // substrings of the error, in order
	}{
		{"validation", nil,
			[]string{"remote", "create", "bad", "--url", "ftp://x", "--policy", "sometimes"},
			[]string{"invalid remote \"bad\":\n  policy: must be on_demand, streamed or immediate\n  url: must be an http(s) URL"}},
		{"validation of a repository", nil, []string{"repository", "create", "r", "--remote", "hub", "--quota", "lots"},
			[]string{"invalid repository \"r\":\n  quota: invalid size \"lots\""}},
		{"not found", nil, []string{"remote", "update", "nope", "--policy", "streamed"}, []string{`remote "nope" not found`}},
		{"exists", nil, []string{"remote", "create", "hub", "--url", "https://x"},
			[]string{`conflict: remote "hub" is at version 1, not 0 (remote "hub" already exists: use update)`}},
		{"concurrent change", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut { // someone else wrote between our GET and PUT
				f.index++
				f.objects["remotes"]["hub"]["version"] = f.index
			}
			return false
		}, []string{"remote", "update", "hub", "--policy", "streamed"},
			[]string{`conflict: remote "hub" is at version 2, not 1 (someone changed it: re-run update)`}},
		{"no leader", reply("PUT", 503, `{"error":"no leader within 5s","code":"no_leader"}`),
			[]string{"repository", "create", "r", "--remote", "hub"}, []string{"no Raft leader (is a majority of voters up?)\n  the node said: no leader within 5s"}},
		{"not leader", reply("DELETE", 421, `{"error":"not the leader","code":"not_leader"}`, "X-Hfcache-Leader", "n2"),
			[]string{"distribution", "delete", "d"}, []string{"is not the Raft leader", "the leader is n2"}},
		{"server error", reply("GET", 500, "boom\n"), []string{"remote", "list"}, []string{"answered 500 Internal Server Error: boom"}},
		{"not the admin API", reply("GET", 404, "404 page not found\n"), []string{"cluster", "raft"},
			[]string{"has no /v1/cluster/raft (is --addr the admin address"}},
		{"not JSON", reply("GET", 200, "<html>"), []string{"cluster", "members"}, []string{"unexpected answer from the admin API"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.locked(func() { f.hook = c.hook })
			out, _, err := runCLI(t, "", append(c.args, "--addr", addr)...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out)
			}
			if exitCode(err) != 1 {
				t.Errorf("exit %d, want 1", exitCode(err))
			}
			msg := err.Error()
			for _, w := range c.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

func TestAdminToken(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)
	f.locked(func() { f.token = "adm1n-token" })

	for _, args := range [][]string{{"remote", "list"}, {"cluster", "members", "--admin-token", "wrong-token"}} {
		_, errOut, err := runCLI(t, "", append(args, "--addr", addr)...)
		if err == nil || err.Error() != "admin token missing or wrong (set HFCACHE_ADMIN_TOKEN)" || exitCode(err) != 1 {
			t.Errorf("%v: %v", args, err)
		}
		if strings.Contains(errOut, "wrong-token") || (err != nil && strings.Contains(err.Error(), "wrong-token")) {
			t.Errorf("the admin token was printed")
		}
	}

	t.Setenv("HFCACHE_ADMIN_TOKEN", "adm1n-token")
	mustRun(t, addr, "", "remote", "list")
	if a := f.last(t, "GET").Auth; a != "Bearer adm1n-token" {
		t.Errorf("Authorization %q", a)
	}
	// The flag wins over the environment.
	if _, _, err := runCLI(t, "", "remote", "list", "--addr", addr, "--admin-token", "other"); err == nil {
		t.Errorf("--admin-token did not override HFCACHE_ADMIN_TOKEN")
	}
}

func TestEnvironment(t *testing.T) {
	cliEnv(t)
	_, addr := newFakeAdmin(t)
	t.Setenv("HFCACHE_ADDR", strings.TrimPrefix(addr, "http://")) // host:port means http
	t.Setenv("HFCACHE_OUTPUT", "json")
	out, _, err := runCLI(t, "", "remote", "list")
	if err != nil || out != "[]\n" {
		t.Fatalf("list from environment: %q, %v", out, err)
	}
	// Flags win over the environment.
	t.Setenv("HFCACHE_ADDR", "http://127.0.0.1:1")
	if out, _, err = runCLI(t, "", "remote", "list", "--addr", addr+"/", "-o", "table"); err != nil || out != "" {
		t.Fatalf("flags over environment: %q, %v", out, err)
	}
}

func TestConnectionRefused(t *testing.T) {
	cliEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostport := ln.Addr().String()
	ln.Close()
	_, _, err = runCLI(t, "", "cluster", "members", "--addr", hostport, "--timeout", "5s")
	want := "cannot reach hfcache admin API at http://" + hostport + ": dial tcp " + hostport + ": connect: connection refused"
	if err == nil || err.Error() != want || exitCode(err) != 1 {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestTimeout(t *testing.T) {
	cliEnv(t)
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	_, _, err := runCLI(t, "", "remote", "list", "--addr", srv.URL, "--timeout", "50ms")
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach hfcache admin API at "+srv.URL+": ") ||
		!strings.Contains(err.Error(), "Timeout") {
		t.Errorf("got %v", err)
	}
}

func TestCluster(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)

	out, _ := mustRun(t, addr, "", "cluster", "members")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 || !slices.Equal(strings.Fields(lines[0]),
		[]string{"NAME", "STATE", "SUFFRAGE", "LEADER", "CLIENT_URL", "ADMIN_URL", "GOSSIP_ADDR", "RAFT_ADDR", "VERSION"}) {
		t.Fatalf("members table:\n%s", out)
	}
	if got := strings.Fields(lines[1]); !slices.Equal(got[:7], []string{"n1", "(self)", "alive", "voter", "yes", "http://n1:8080", "http://n1:8081"}) {
		t.Errorf("self row %q", lines[1])
	}
	if got := strings.Fields(lines[4]); !slices.Equal(got, []string{"n4", "suspect", "-", "-", "http://n4:8080", "-", "-", "-", "-"}) {
		t.Errorf("suspect row %q", lines[4])
	}
	// Columns line up.
	col := strings.Index(lines[0], "CLIENT_URL")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "http://") {
			t.Errorf("CLIENT_URL column not aligned:\n%s", out)
		}
	}

	out, _ = mustRun(t, addr, "", "cluster", "members", "-o", "json")
	if got := decodeJSON[membersView](t, out); got.Node != "n1" || len(got.Members) != 4 || got.Members[0].RaftAddr != "n1:7947" {
		t.Errorf("members -o json:\n%s", out)
	}

	out, _ = mustRun(t, addr, "", "cluster", "raft")
	for _, want := range [][]string{
		{"STATE", "leader"}, {"TERM", "3"}, {"LAST_INDEX", "42"}, {"COMMIT_INDEX", "42"}, {"APPLIED_INDEX", "41"},
		{"LEADER", "n1", "(127.0.0.1:7947)"}, {"ID", "ADDRESS", "SUFFRAGE", "LEADER"},
		{"n1", "127.0.0.1:7947", "voter", "yes"}, {"n2", "127.0.0.2:7947", "nonvoter", "-"},
	} {
		if !slices.ContainsFunc(tableLines(out), func(r []string) bool { return slices.Equal(r, want) }) {
			t.Errorf("raft output lacks row %q:\n%s", want, out)
		}
	}
	out, _ = mustRun(t, addr, "", "cluster", "raft", "-o", "json")
	if got := decodeJSON[raftView](t, out); got.AppliedIndex != 41 || len(got.Servers) != 2 || !strings.HasSuffix(out, "}\n") || strings.HasSuffix(out, "\n\n") {
		t.Errorf("raft -o json:\n%s", out)
	}

	out, _ = mustRun(t, addr, "", "cluster", "transfer-leadership")
	if out != "leadership transferred to n2\n" || f.last(t, "POST").Path != "/v1/cluster/transfer-leadership" {
		t.Errorf("transfer-leadership: %q", out)
	}
}

func TestUsageErrors(t *testing.T) {
	cliEnv(t)
	f, addr := newFakeAdmin(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"remote", "get"}, "takes NAME, got 0"},
		{[]string{"remote", "get", "a", "b"}, "takes NAME, got 2"},
		{[]string{"remote", "delete", ""}, "NAME is empty"},
		{[]string{"remote", "list", "extra"}, "takes no arguments"},
		{[]string{"remote", "frobnicate"}, `unknown command "frobnicate" for "hfcache remote"`},
		{[]string{"remote", "list", "-o", "yaml"}, `--output "yaml": use table or json`},
		{[]string{"remote", "list", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"remote", "list", "--addr", "ftp://x"}, `--addr "ftp://x": want the admin API URL`},
		{[]string{"remote", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"remote", "create", "x", "--ref-ttl", "soon"}, `invalid argument "soon" for "--ref-ttl"`},
		{[]string{"remote", "create", "x", "--token", "t", "--token-stdin"}, "give --token or --token-stdin, not both"},
		{[]string{"remote", "update", "x"}, "nothing to update"},
		{[]string{"repository", "create", "x", "--warm", "model"}, `--warm "model": want TYPE:REPO`},
		{[]string{"distribution", "update", "x"}, "nothing to update"},
		{[]string{"cluster", "members", "n1"}, "takes no arguments"},
	}
	for _, c := range cases {
		args := append(c.args, "--addr", addr)
		if slices.Contains(c.args, "--addr") {
			args = c.args
		}
		_, _, err := runCLI(t, "", args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: exit %d, error %v; want exit 2 and %q", c.args, exitCode(err), err, c.want)
		} else if !strings.Contains(err.Error(), "--help' for usage.") {
			t.Errorf("%q: error does not point to --help: %v", c.args, err)
		}
	}
	if m := f.methods(); len(m) != 0 {
		t.Errorf("usage errors reached the server: %v", m)
	}
	if exitCode(nil) != 0 {
		t.Errorf("exitCode(nil) = %d", exitCode(nil))
	}

	// A bare group prints its help and succeeds.
	out, _, err := runCLI(t, "", "cluster")
	if err != nil || !strings.Contains(out, "transfer-leadership") {
		t.Errorf("bare `hfcache cluster`: %v\n%s", err, out)
	}
}

func TestParseWarm(t *testing.T) {
	cases := []struct {
		in   string
		want warmSpec
		err  string
	}{
		{in: "model:org/name", want: warmSpec{Type: "model", Repo: "org/name"}},
		{in: "model:gpt2@main", want: warmSpec{Type: "model", Repo: "gpt2", Revision: "main"}},
		{in: "model:org/name@main:*.json,*.safetensors",
			want: warmSpec{Type: "model", Repo: "org/name", Revision: "main", Include: []string{"*.json", "*.safetensors"}}},
		{in: "datasets:org/d:data/*.parquet", want: warmSpec{Type: "dataset", Repo: "org/d", Include: []string{"data/*.parquet"}}},
		{in: "space:org/s@refs/pr/1", want: warmSpec{Type: "space", Repo: "org/s", Revision: "refs/pr/1"}},
		{in: "kernel:org/k", want: warmSpec{Type: "kernel", Repo: "org/k"}},
		{in: "model:org/name@0123456789abcdef0123456789abcdef01234567:config.json",
			want: warmSpec{Type: "model", Repo: "org/name", Revision: "0123456789abcdef0123456789abcdef01234567", Include: []string{"config.json"}}},
		{in: "model", err: "want TYPE:REPO"},
		{in: "model:", err: "want TYPE:REPO"},
		{in: "org/name", err: "want TYPE:REPO"},
		{in: "checkpoint:org/name", err: `type "checkpoint"`},
		{in: "model:@main", err: "no repo id"},
		{in: "model:org/name@", err: "empty revision"},
		{in: "model:org/name@main:", err: "empty file patterns"},
		{in: "model:org/name:*.json,,*.bin", err: "empty file pattern"},
	}
	for _, c := range cases {
		got, err := parseWarm(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseWarm(%q) = %+v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseWarm(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if back, err := parseWarm(got.String()); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("%q does not round-trip: %q → %+v, %v", c.in, got.String(), back, err)
		}
	}
}

func TestAdminCommandsRegistered(t *testing.T) {
	root := newRootCmd()
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	sort.Strings(names)
	for _, want := range []string{"cluster", "distribution", "remote", "repository", "serve"} {
		if !slices.Contains(names, want) {
			t.Errorf("root lacks %q: %v", want, names)
		}
	}
}
