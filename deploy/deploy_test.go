// These tests check the deployment files against the binary they deploy,
// without a container engine (see doc.go for the list).
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// minStopSeconds is the least time any stop timeout here may give a node:
// on SIGTERM readiness goes false for --drain-grace (5s), downloads get
// --drain-timeout (60s), then leaving the cluster, plus a margin.
const minStopSeconds = 80

// testVersion is stamped into the test build through the Dockerfile's
// VERSION build argument.
const testVersion = "deploy-test"

// secretFlags must never appear on a command line (ps, /proc/PID/cmdline,
// kubectl describe): they come from the environment.
var secretFlags = []string{"cluster-secret", "admin-token", "upstream-token"}

var workDir string // removed after the tests

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "hfcache-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The binary, built once with the Dockerfile's own `go build` line.

var built struct {
	once sync.Once
	path string
	log  string
	err  error
}

// staticBinary builds cmd/hfcache as the Dockerfile does and returns its path.
func staticBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.path = filepath.Join(workDir, "hfcache")
		env, args, err := dockerGoBuild(readFile(t, "Dockerfile"), built.path)
		if err != nil {
			built.err = err
			return
		}
		cmd := exec.Command(goTool(), args...)
		cmd.Dir = ".." // the module root: the Dockerfile's build context
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		built.log = fmt.Sprintf("%s %s %s\n%s", strings.Join(env, " "), goTool(), strings.Join(args, " "), out)
		if err != nil {
			built.err = fmt.Errorf("%v", err)
		}
	})
	if built.err != nil {
		t.Fatalf("building hfcache with the Dockerfile's go build line: %v\n%s", built.err, built.log)
	}
	return built.path
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// serveHelp is what `hfcache serve --help` says about its flags.
type serveHelp struct {
	flags map[string]helpFlag
	text  string
}

type helpFlag struct {
	typ string // "" for a bool flag
	def string // the default as printed, quotes removed
}

var help struct {
	once sync.Once
	h    serveHelp
	err  error
}

func serveFlags(t *testing.T) serveHelp {
	t.Helper()
	bin := staticBinary(t)
	help.once.Do(func() {
		out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
		if err != nil {
			help.err = fmt.Errorf("hfcache serve --help: %v\n%s", err, out)
			return
		}
		help.h = parseHelp(string(out))
		if len(help.h.flags) < 10 {
			help.err = fmt.Errorf("hfcache serve --help lists only %d flags:\n%s", len(help.h.flags), out)
		}
	})
	if help.err != nil {
		t.Fatal(help.err)
	}
	return help.h
}

var (
	helpLine    = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z0-9]+))?\s{2,}(.*)$`)
	helpDefault = regexp.MustCompile(`\(default (?:"([^"]*)"|([^)]*))\)\s*$`)
)

func parseHelp(out string) serveHelp {
	h := serveHelp{flags: map[string]helpFlag{}, text: out}
	for _, line := range strings.Split(out, "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := helpFlag{typ: m[2]}
		if d := helpDefault.FindStringSubmatch(m[3]); d != nil {
			f.def = d[1] + d[2]
		}
		h.flags[m[1]] = f
	}
	return h
}

// envName is the environment variable of a serve flag.
func envName(flag string) string {
	return "HFCACHE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// checkEnvName fails unless name is a variable `hfcache serve` reads.
func (h serveHelp) checkEnvName(t *testing.T, where, name string) {
	t.Helper()
	if name == "HF_TOKEN" {
		if !strings.Contains(h.text, "HF_TOKEN") {
			t.Errorf("%s: HF_TOKEN is used, but hfcache serve --help does not mention it", where)
		}
		return
	}
	if !strings.HasPrefix(name, "HFCACHE_") {
		return
	}
	for f := range h.flags {
		if envName(f) == name {
			return
		}
	}
	t.Errorf("%s: %s is not the variable of any hfcache serve flag", where, name)
}

// parsedArgs are the flags of a command line, by name.
type parsedArgs map[string][]string

func (p parsedArgs) get(name string) (string, bool) {
	v, ok := p[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// checkArgs fails on a flag that `hfcache serve` does not have, on a secret
// on the command line, and on positional arguments; it returns the flags.
func (h serveHelp) checkArgs(t *testing.T, where string, args []string) parsedArgs {
	t.Helper()
	out := parsedArgs{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") || a == "--" {
			t.Errorf("%s: unexpected argument %q (serve takes no positional arguments)", where, a)
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		f, ok := h.flags[name]
		if !ok {
			t.Errorf("%s: --%s is not a flag of hfcache serve", where, name)
			continue
		}
		if slices.Contains(secretFlags, name) {
			t.Errorf("%s: --%s puts a secret on the command line; use %s in the environment", where, name, envName(name))
		}
		if !hasVal && f.typ != "" {
			if i+1 >= len(args) {
				t.Errorf("%s: --%s has no value", where, name)
				continue
			}
			i++
			val = args[i]
		}
		out[name] = append(out[name], val)
	}
	return out
}

// value is a flag's value on the command line, else its default.
func (h serveHelp) value(p parsedArgs, name string) string {
	if v, ok := p.get(name); ok {
		return v
	}
	return h.flags[name].def
}

func (h serveHelp) port(t *testing.T, p parsedArgs, name string) int {
	t.Helper()
	addr := h.value(p, name)
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--%s %q: %v", name, addr, err)
	}
	n, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatalf("--%s %q: port: %v", name, addr, err)
	}
	return n
}

// ---------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions, joining continued
// lines and dropping comments.
func parseDockerfile(text string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

// stages splits instructions at each FROM; global ARGs come first, in a
// stage of their own.
func stages(ins []instruction) [][]instruction {
	out := [][]instruction{nil}
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], in)
	}
	return out
}

// shellFields splits a shell command line into words: quotes and backslash
// escapes, no expansion. Operators (&&, ;, |) are refused: the build line
// must be one command for this test to rerun it.
func shellFields(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case strings.IndexByte(";&|<>`", c) >= 0:
			return nil, fmt.Errorf("shell operator %q: keep the go build RUN a single command", c)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// dockerGoBuild finds the RUN with `go build` in the Dockerfile and turns it
// into the environment and arguments to run it here, writing to out. Build
// arguments take their Dockerfile defaults, except VERSION (testVersion)
// and the target platform (this machine's).
func dockerGoBuild(dockerfile, out string) (env, args []string, err error) {
	vars := map[string]string{}
	var run *instruction
	for _, in := range parseDockerfile(dockerfile) {
		switch in.cmd {
		case "ARG":
			for _, a := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(a, "=")
				vars[k] = strings.Trim(v, `"'`)
			}
		case "RUN":
			if strings.Contains(in.args, "go build") {
				if run != nil {
					return nil, nil, fmt.Errorf("two RUN instructions with go build (lines %d and %d)", run.line, in.line)
				}
				run = &in
			}
		}
	}
	if run == nil {
		return nil, nil, errors.New("no RUN instruction with go build")
	}
	vars["VERSION"] = testVersion
	vars["TARGETOS"], vars["TARGETARCH"] = runtime.GOOS, runtime.GOARCH
	words, err := shellFields(run.args)
	if err != nil {
		return nil, nil, fmt.Errorf("line %d: %v", run.line, err)
	}
	var unknown []string
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := vars[k]
			if !ok {
				unknown = append(unknown, k)
			}
			return v
		})
	}
	i := 0
	for i < len(words) && strings.HasPrefix(words[i], "--") { // RUN --mount=...
		i++
	}
	for ; i < len(words) && assignment.MatchString(words[i]); i++ {
		env = append(env, expand(words[i]))
	}
	if len(words) < i+2 || words[i] != "go" || words[i+1] != "build" {
		return nil, nil, fmt.Errorf("line %d: want [VAR=value ...] go build ..., got %q", run.line, run.args)
	}
	sawOut := false
	for j := i + 1; j < len(words); j++ {
		w := expand(words[j])
		if w == "-o" && j+1 < len(words) {
			args = append(args, "-o", out)
			j++
			sawOut = true
			continue
		}
		args = append(args, w)
	}
	if len(unknown) > 0 {
		return nil, nil, fmt.Errorf("line %d: undefined build arguments %v", run.line, unknown)
	}
	if !sawOut {
		args = append(args[:1], append([]string{"-o", out}, args[1:]...)...)
	}
	return env, args, nil
}

// versionAtLeast compares dotted version numbers: "1.26" >= "1.26".
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range b {
		if i >= len(a) {
			return false
		}
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}

// ldflags is the value of -ldflags in go build arguments.
func ldflags(args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "-ldflags="); ok {
			return v
		}
		if a == "-ldflags" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	text := readFile(t, "Dockerfile")

	env, args, err := dockerGoBuild(text, "/out")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("the go build line sets %v: want CGO_ENABLED=0 (a static binary for FROM scratch)", env)
	}
	if !slices.Contains(args, "-trimpath") {
		t.Errorf("the go build line %v has no -trimpath", args)
	}
	lf := strings.Fields(ldflags(args))
	for _, want := range []string{"-s", "-w"} {
		if !slices.Contains(lf, want) {
			t.Errorf("-ldflags %q lacks %s", ldflags(args), want)
		}
	}
	if !strings.Contains(ldflags(args), "-X main.version="+testVersion) {
		t.Errorf("-ldflags %q does not stamp main.version from the VERSION build argument", ldflags(args))
	}

	// The builder's Go is at least the go.mod's: the golang images set
	// GOTOOLCHAIN=local and would refuse a newer go line.
	var goVersion string
	for _, in := range parseDockerfile(text) {
		if v, ok := strings.CutPrefix(in.args, "GO_VERSION="); in.cmd == "ARG" && ok {
			goVersion = v
		}
	}
	modGo := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(readFile(t, "../go.mod"))
	if modGo == nil || goVersion == "" {
		t.Errorf("cannot compare ARG GO_VERSION=%q with the go line of go.mod", goVersion)
	} else if !versionAtLeast(goVersion, modGo[1]+"."+modGo[2]) {
		t.Errorf("ARG GO_VERSION=%s is older than go.mod's go %s.%s", goVersion, modGo[1], modGo[2])
	}

	st := stages(parseDockerfile(text))
	final := st[len(st)-1]
	if len(st) < 3 || final[0].args != "scratch" {
		t.Fatalf("want a multi-stage build ending FROM scratch; the last stage is FROM %s", final[0].args)
	}
	var entry []string
	var user, volume string
	var expose []string
	var envs []string
	var copies []string
	for _, in := range final[1:] {
		switch in.cmd {
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Errorf("line %d: ENTRYPOINT must be the JSON (exec) form, so the node is PID 1 and gets SIGTERM: %v", in.line, err)
			}
		case "USER":
			user = in.args
		case "VOLUME":
			volume = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "ENV":
			envs = append(envs, strings.Fields(in.args)...)
		case "COPY":
			copies = append(copies, in.args)
		}
	}
	if !slices.Equal(entry, []string{"/hfcache", "serve"}) {
		t.Errorf("ENTRYPOINT %q, want [\"/hfcache\", \"serve\"]", entry)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric, non-root uid (no /etc/passwd in scratch; runAsNonRoot needs a number)", user)
	}
	hasCopy := func(src, dst string) bool {
		for _, c := range copies {
			f := strings.Fields(c)
			if len(f) >= 2 && strings.HasSuffix(f[len(f)-2], src) && strings.HasPrefix(f[len(f)-1], dst) && strings.Contains(c, "--from=") {
				return true
			}
		}
		return false
	}
	if !hasCopy("ca-certificates.crt", "/etc/ssl/certs/") {
		t.Error("the final stage does not copy ca-certificates.crt to /etc/ssl/certs/: https://huggingface.co would fail TLS verification")
	}
	if !hasCopy("/hfcache", "/hfcache") {
		t.Error("the final stage does not copy the binary to /hfcache")
	}
	dataDir := ""
	for _, e := range envs {
		if v, ok := strings.CutPrefix(e, "HFCACHE_DATA_DIR="); ok {
			dataDir = v
		}
	}
	if dataDir == "" || !strings.Contains(volume, dataDir) {
		t.Errorf("ENV HFCACHE_DATA_DIR=%q and VOLUME %s: the data directory must be the volume", dataDir, volume)
	}

	h := serveFlags(t)
	for _, e := range envs {
		k, _, _ := strings.Cut(e, "=")
		h.checkEnvName(t, "Dockerfile ENV", k)
	}
	h.checkArgs(t, "Dockerfile ENTRYPOINT", entry[min(2, len(entry)):])
	for _, p := range []string{
		fmt.Sprintf("%d/tcp", h.port(t, nil, "listen")),
		fmt.Sprintf("%d/tcp", h.port(t, nil, "admin-listen")),
		fmt.Sprintf("%d/tcp", h.port(t, nil, "gossip-addr")),
		fmt.Sprintf("%d/udp", h.port(t, nil, "gossip-addr")),
		fmt.Sprintf("%d/tcp", h.port(t, nil, "raft-addr")),
	} {
		if !slices.Contains(expose, p) && !slices.Contains(expose, strings.TrimSuffix(p, "/tcp")) {
			t.Errorf("EXPOSE %v lacks %s", expose, p)
		}
	}
}

// TestStaticBinary: the Dockerfile's build line gives a binary that runs in
// an empty image.
func TestStaticBinary(t *testing.T) {
	t.Parallel()
	bin := staticBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%v\n%s", err, built.log)
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			t.Error("the binary has a PT_INTERP program header: it needs a dynamic loader, which FROM scratch does not have")
		case elf.PT_DYNAMIC:
			t.Error("the binary has a PT_DYNAMIC program header: it is dynamically linked")
		}
	}
	for _, s := range []string{".interp", ".dynamic"} {
		if f.Section(s) != nil {
			t.Errorf("the binary has a %s section: it is not static", s)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary imports %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s did not strip it")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), testVersion) {
		t.Errorf("hfcache --version: %q, %v; want the version %q from the VERSION build argument", out, err, testVersion)
	}
}

// ---------------------------------------------------------------------------
// YAML

type doc = map[string]any

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []doc {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFileBytes(t, path)))
	var docs []doc
	for {
		var d doc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if d != nil { // an empty document (a trailing ---)
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// get walks nested maps: get(d, "spec", "template") is d.spec.template.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func getMap(v any, keys ...string) map[string]any {
	m, _ := get(v, keys...).(map[string]any)
	return m
}

func getList(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func getStr(v any, keys ...string) string {
	switch x := get(v, keys...).(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

func strList(t *testing.T, where string, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: want a list of strings, got %T", where, v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%s[%d]: want a string, got %T %v", where, i, x, x)
		}
		out[i] = s
	}
	return out
}

// subset reports whether every label of sel is in labels with the same value.
func subset(sel, labels map[string]any) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestYAMLParses(t *testing.T) {
	t.Parallel()
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		n++
		docs := yamlDocs(t, path)
		if filepath.Dir(path) == "kubernetes" {
			for i, d := range docs {
				if getStr(d, "apiVersion") == "" || getStr(d, "kind") == "" {
					t.Errorf("%s: document %d has no apiVersion or kind", path, i+1)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("found only %d YAML files under deploy/", n)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

type manifests struct {
	all     []doc
	byKind  map[string][]doc
	secrets []doc    // from secret.example.yaml
	images  []string // names kustomization.yaml replaces
}

func (m manifests) one(t *testing.T, kind string) doc {
	t.Helper()
	if len(m.byKind[kind]) != 1 {
		t.Fatalf("want one %s in the kustomization, have %d", kind, len(m.byKind[kind]))
	}
	return m.byKind[kind][0]
}

// loadKustomization reads the resources kustomization.yaml lists.
func loadKustomization(t *testing.T) manifests {
	t.Helper()
	k := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	if getStr(k, "kind") != "Kustomization" {
		t.Fatalf("kustomization.yaml: kind %q", getStr(k, "kind"))
	}
	m := manifests{byKind: map[string][]doc{}}
	res := strList(t, "kustomization.yaml resources", get(k, "resources"))
	for _, r := range res {
		if strings.Contains(r, "secret") {
			t.Errorf("kustomization.yaml lists %s: the example Secret's placeholder values would be deployed", r)
		}
		for _, d := range yamlDocs(t, filepath.Join("kubernetes", r)) {
			m.all = append(m.all, d)
			m.byKind[getStr(d, "kind")] = append(m.byKind[getStr(d, "kind")], d)
		}
	}
	// Every manifest in the directory is either listed or the example Secret.
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && base != "secret.example.yaml" && !slices.Contains(res, base) {
			t.Errorf("kubernetes/%s is not listed in kustomization.yaml", base)
		}
	}
	m.secrets = yamlDocs(t, "kubernetes/secret.example.yaml")
	for _, img := range getList(k, "images") {
		if getStr(img, "name") == "" || getStr(img, "newName") == "" {
			t.Errorf("kustomization.yaml images entry %v: want name and newName", img)
		}
		m.images = append(m.images, getStr(img, "name"))
	}
	return m
}

func TestKubernetes(t *testing.T) {
	t.Parallel()
	m := loadKustomization(t)
	h := serveFlags(t)

	sts := m.one(t, "StatefulSet")
	pod := getMap(sts, "spec", "template")
	podLabels := getMap(pod, "metadata", "labels")
	podSpec := getMap(pod, "spec")
	if !subset(getMap(sts, "spec", "selector", "matchLabels"), podLabels) {
		t.Fatalf("StatefulSet selector %v does not select its pods %v", getMap(sts, "spec", "selector", "matchLabels"), podLabels)
	}
	replicas, _ := get(sts, "spec", "replicas").(int)
	if replicas != 3 {
		t.Errorf("StatefulSet replicas %v, want 3", get(sts, "spec", "replicas"))
	}
	if p := getStr(sts, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("podManagementPolicy %q: want Parallel, or pod 1 waits for pod 0 to be ready, which waits for --bootstrap-expect peers", p)
	}
	if g, _ := get(podSpec, "terminationGracePeriodSeconds").(int); g < minStopSeconds {
		t.Errorf("terminationGracePeriodSeconds %d: want at least %d for a graceful stop", g, minStopSeconds)
	}
	if v, ok := get(podSpec, "enableServiceLinks").(bool); !ok || v {
		t.Error("enableServiceLinks must be false: a Service named hfcache injects HFCACHE_* variables, and HFCACHE_<FLAG> variables are flags")
	}
	if v, _ := get(podSpec, "securityContext", "runAsNonRoot").(bool); !v {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}

	containers := getList(podSpec, "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, have %d", len(containers))
	}
	c := containers[0]
	if len(m.images) > 0 && !slices.Contains(m.images, getStr(c, "image")) {
		t.Errorf("container image %q is not one kustomization.yaml sets (%v)", getStr(c, "image"), m.images)
	}
	if getStr(c, "command") != "" {
		t.Error("the container sets command: it would replace the image's /hfcache serve entrypoint; use args")
	}
	args := h.checkArgs(t, "StatefulSet args", strList(t, "args", get(c, "args")))

	// $(VAR) in args must be defined in env; remember where each comes from.
	env := map[string]any{}
	for _, e := range getList(c, "env") {
		name := getStr(e, "name")
		env[name] = get(e, "valueFrom")
		h.checkEnvName(t, "StatefulSet env", name)
		if ref := getMap(e, "valueFrom", "secretKeyRef"); ref != nil {
			checkSecretRef(t, m.secrets, name, ref)
		} else if strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN") {
			t.Errorf("env %s is not taken from a Secret", name)
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for name, vals := range args {
		for _, v := range vals {
			for _, r := range ref.FindAllStringSubmatch(v, -1) {
				if _, ok := env[r[1]]; !ok {
					t.Errorf("--%s=%s: $(%s) is not defined in the container's env", name, v, r[1])
				}
			}
		}
	}
	fieldRef := func(v string) string {
		if r := ref.FindStringSubmatch(v); r != nil {
			return getStr(env[r[1]], "fieldRef", "fieldPath")
		}
		return ""
	}
	if v, _ := args.get("bootstrap-expect"); v != strconv.Itoa(replicas) {
		t.Errorf("--bootstrap-expect %q, want the replica count %d", v, replicas)
	}
	if v, _ := args.get("node-name"); fieldRef(v) != "metadata.name" {
		t.Errorf("--node-name %q: want $(VAR) of the pod name (fieldRef metadata.name)", v)
	}
	if v, _ := args.get("advertise-addr"); fieldRef(v) != "status.podIP" {
		t.Errorf("--advertise-addr %q: want $(VAR) of the pod IP (fieldRef status.podIP)", v)
	}
	if v, ok := args.get("raft-advertise"); ok && fieldRef(v) != "status.podIP" {
		t.Errorf("--raft-advertise %q: want the pod IP (or leave it out: it defaults to --advertise-addr with the --raft-addr port)", v)
	}

	// --join names the headless Service that governs the StatefulSet.
	var headless, client doc
	for _, s := range m.byKind["Service"] {
		if getStr(s, "spec", "clusterIP") == "None" {
			headless = s
		} else {
			client = s
		}
	}
	if headless == nil || client == nil {
		t.Fatal("want a headless Service (clusterIP: None) and a client Service")
	}
	hl := getStr(headless, "metadata", "name")
	if getStr(sts, "spec", "serviceName") != hl {
		t.Errorf("StatefulSet serviceName %q, want the headless Service %q", getStr(sts, "spec", "serviceName"), hl)
	}
	if v, _ := get(headless, "spec", "publishNotReadyAddresses").(bool); !v {
		t.Error("the headless Service must publishNotReadyAddresses: nodes are ready only after they found each other")
	}
	gossipPort := h.port(t, args, "gossip-addr")
	joins, ok := args["join"]
	if !ok {
		t.Fatal("no --join")
	}
	for _, j := range strings.Split(strings.Join(joins, ","), ",") {
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			t.Errorf("--join %q: %v", j, err)
			continue
		}
		if host != hl && !strings.HasPrefix(host, hl+".") {
			t.Errorf("--join %q does not name the headless Service %q", j, hl)
		}
		if strings.Contains(host, "$(") && fieldRef(host) != "metadata.namespace" {
			t.Errorf("--join %q: the $(VAR) in it must be the pod's namespace", j)
		}
		if port != strconv.Itoa(gossipPort) {
			t.Errorf("--join %q: port %s, want the gossip port %d", j, port, gossipPort)
		}
	}

	// Ports and probes.
	ports := map[string]int{} // name → containerPort, and "proto/port" → 1
	for _, p := range getList(c, "ports") {
		n, _ := get(p, "containerPort").(int)
		ports[getStr(p, "name")] = n
		proto := getStr(p, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		ports[fmt.Sprintf("%s/%d", proto, n)] = 1
	}
	for _, want := range []string{
		fmt.Sprintf("TCP/%d", h.port(t, args, "listen")),
		fmt.Sprintf("TCP/%d", h.port(t, args, "admin-listen")),
		fmt.Sprintf("TCP/%d", gossipPort),
		fmt.Sprintf("UDP/%d", gossipPort),
		fmt.Sprintf("TCP/%d", h.port(t, args, "raft-addr")),
	} {
		if ports[want] != 1 {
			t.Errorf("the container does not declare port %s", want)
		}
	}
	adminPort := h.port(t, args, "admin-listen")
	probePort := func(probe string) {
		p := get(c, probe, "httpGet", "port")
		n, isNum := p.(int)
		if !isNum {
			n = ports[getStr(c, probe, "httpGet", "port")]
		}
		if n != adminPort {
			t.Errorf("%s port %v is not the admin port %d", probe, p, adminPort)
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/-/ready", "livenessProbe": "/-/health"} {
		if got := getStr(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		probePort(probe)
	}
	if get(c, "startupProbe") != nil {
		probePort("startupProbe")
	}
	if getMap(c, "resources", "requests") == nil || getMap(c, "resources", "limits") == nil {
		t.Error("the container has no resource requests or limits")
	}
	if v, _ := get(c, "securityContext", "readOnlyRootFilesystem").(bool); !v {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if v, ok := get(c, "securityContext", "allowPrivilegeEscalation").(bool); !ok || v {
		t.Error("allowPrivilegeEscalation is not false")
	}

	// The data directory is a volumeClaimTemplate.
	dataDir := h.value(args, "data-dir")
	claims := map[string]bool{}
	for _, v := range getList(sts, "spec", "volumeClaimTemplates") {
		claims[getStr(v, "metadata", "name")] = true
	}
	mounted := false
	for _, vm := range getList(c, "volumeMounts") {
		if getStr(vm, "mountPath") == dataDir && claims[getStr(vm, "name")] {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("--data-dir %s is not a volumeClaimTemplate mount", dataDir)
	}

	// Services and the budget select these pods.
	for _, s := range []doc{headless, client} {
		if !subset(getMap(s, "spec", "selector"), podLabels) {
			t.Errorf("Service %s selector %v does not select the pods %v", getStr(s, "metadata", "name"), getMap(s, "spec", "selector"), podLabels)
		}
	}
	clientPort := false
	for _, p := range getList(client, "spec", "ports") {
		tp := get(p, "targetPort")
		n, isNum := tp.(int)
		if !isNum {
			n = ports[getStr(p, "targetPort")]
		}
		if n == h.port(t, args, "listen") {
			clientPort = true
		}
	}
	if !clientPort {
		t.Errorf("the client Service does not target the client port %d", h.port(t, args, "listen"))
	}
	pdb := m.one(t, "PodDisruptionBudget")
	if !subset(getMap(pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", getMap(pdb, "spec", "selector", "matchLabels"), podLabels)
	}
	if v := get(pdb, "spec", "maxUnavailable"); v != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", v)
	}
	for _, np := range m.byKind["NetworkPolicy"] {
		if !subset(getMap(np, "spec", "podSelector", "matchLabels"), podLabels) {
			t.Errorf("NetworkPolicy %s does not select the pods", getStr(np, "metadata", "name"))
		}
	}
}

// checkSecretRef: a secretKeyRef names the example Secret and one of its keys.
func checkSecretRef(t *testing.T, secrets []doc, env string, ref map[string]any) {
	t.Helper()
	for _, s := range secrets {
		if getStr(s, "kind") != "Secret" || getStr(s, "metadata", "name") != getStr(ref, "name") {
			continue
		}
		if get(s, "stringData", getStr(ref, "key")) == nil && get(s, "data", getStr(ref, "key")) == nil {
			t.Errorf("env %s: Secret %s has no key %q in secret.example.yaml", env, getStr(ref, "name"), getStr(ref, "key"))
		}
		return
	}
	t.Errorf("env %s: Secret %q is not in secret.example.yaml", env, getStr(ref, "name"))
}

// ---------------------------------------------------------------------------
// Compose and nginx

func TestCompose(t *testing.T) {
	t.Parallel()
	h := serveFlags(t)
	c := yamlDocs(t, "compose.yaml")[0]
	services := getMap(c, "services")
	volumes := getMap(c, "volumes")

	var nodes []string
	for name, s := range services {
		if getStr(s, "build", "dockerfile") == "" {
			continue
		}
		nodes = append(nodes, name)
		ctx := getStr(s, "build", "context")
		if _, err := os.Stat(filepath.Join(ctx, getStr(s, "build", "dockerfile"))); err != nil {
			t.Errorf("service %s: build context %q and dockerfile %q: %v", name, ctx, getStr(s, "build", "dockerfile"), err)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("want three hfcache services built from deploy/Dockerfile, have %v", nodes)
	}
	gossip := h.port(t, nil, "gossip-addr")
	listen := h.port(t, nil, "listen")
	for _, name := range nodes {
		s := getMap(services, name)
		args := h.checkArgs(t, "compose "+name+" command", strList(t, name+" command", get(s, "command")))
		if v, _ := args.get("bootstrap-expect"); v != "3" {
			t.Errorf("%s: --bootstrap-expect %q, want 3", name, v)
		}
		if v, _ := args.get("node-name"); v != name {
			t.Errorf("%s: --node-name %q, want the service name", name, v)
		}
		joins := strings.Split(strings.Join(args["join"], ","), ",")
		for _, other := range nodes {
			if !slices.Contains(joins, fmt.Sprintf("%s:%d", other, gossip)) {
				t.Errorf("%s: --join %v does not name %s:%d", name, joins, other, gossip)
			}
		}
		if _, ok := args["gossip-addr"]; ok {
			t.Errorf("%s: --gossip-addr is set; this test assumes the default port %d", name, gossip)
		}
		for k, v := range getMap(s, "environment") {
			h.checkEnvName(t, "compose "+name+" environment", k)
			if (strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN")) && !strings.HasPrefix(fmt.Sprint(v), "${") {
				t.Errorf("%s: %s has a literal value: take it from deploy/.env with ${...}", name, k)
			}
		}
		if v := getStr(s, "environment", "HFCACHE_CLUSTER_SECRET"); !strings.Contains(v, ":?") {
			t.Errorf("%s: HFCACHE_CLUSTER_SECRET=%q: use ${HFCACHE_CLUSTER_SECRET:?...} so compose refuses to start without it", name, v)
		}
		mounted := false
		for _, v := range strList(t, name+" volumes", get(s, "volumes")) {
			src, dst, _ := strings.Cut(v, ":")
			if _, named := volumes[src]; named && strings.TrimSuffix(dst, ":rw") == "/data" {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s: no named volume on /data (the image's HFCACHE_DATA_DIR)", name)
		}
		if d, err := time.ParseDuration(getStr(s, "stop_grace_period")); err != nil || d < minStopSeconds*time.Second {
			t.Errorf("%s: stop_grace_period %q, want at least %ds", name, getStr(s, "stop_grace_period"), minStopSeconds)
		}
	}

	ng := getMap(services, "nginx")
	if ng == nil || !strings.HasPrefix(getStr(ng, "image"), "nginx") {
		t.Fatal("no nginx service")
	}
	for _, n := range nodes {
		// depends_on is a list of names or a map of name → condition.
		if !slices.Contains(getList(ng, "depends_on"), any(n)) && getMap(ng, "depends_on", n) == nil {
			t.Errorf("nginx does not depend on %s", n)
		}
	}
	confMounted := false
	for _, v := range strList(t, "nginx volumes", get(ng, "volumes")) {
		if strings.HasPrefix(v, "./nginx/nginx.conf:/etc/nginx/nginx.conf") {
			confMounted = true
		}
	}
	if !confMounted {
		t.Error("nginx does not mount ./nginx/nginx.conf as /etc/nginx/nginx.conf")
	}

	// nginx balances over exactly these nodes' client ports.
	conf := readFile(t, "nginx/nginx.conf")
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(upstreamBlock(t, conf), -1) {
		servers = append(servers, m[1])
	}
	var want []string
	for _, n := range nodes {
		want = append(want, fmt.Sprintf("%s:%d", n, listen))
	}
	slices.Sort(servers)
	if !slices.Equal(servers, want) {
		t.Errorf("nginx upstream servers %v, want %v", servers, want)
	}
}

// upstreamBlock is the body of nginx.conf's upstream block.
func upstreamBlock(t *testing.T, conf string) string {
	t.Helper()
	m := regexp.MustCompile(`upstream\s+(\S+)\s*\{([^}]*)\}`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatal("nginx.conf has no upstream block")
	}
	if !strings.Contains(conf, "proxy_pass http://"+m[1]+";") {
		t.Errorf("nginx.conf does not proxy_pass to the upstream %s", m[1])
	}
	return m[2]
}

func TestNginxConf(t *testing.T) {
	t.Parallel()
	conf := readFile(t, "nginx/nginx.conf")
	upstreamBlock(t, conf)
	directive := func(name string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`(?m)^\s*`+name+`\s+([^;]*);`).FindAllStringSubmatch(conf, -1) {
			out = append(out, m[1])
		}
		return out
	}
	if !slices.Contains(directive("proxy_buffering"), "off") {
		t.Error("proxy_buffering is not off: nginx would spool multi-GB downloads to disk")
	}
	next := directive("proxy_next_upstream")
	if len(next) == 0 {
		t.Error("no proxy_next_upstream: no failover")
	}
	for _, n := range next {
		if strings.Contains(n, "non_idempotent") {
			t.Error("proxy_next_upstream retries non-idempotent requests")
		}
	}
	hostSet := false
	for _, v := range directive("proxy_set_header") {
		if strings.HasPrefix(v, "Host ") {
			hostSet = true
		}
	}
	if !hostSet {
		t.Error("nginx does not pass the client's Host: hfcache's Link and Location headers would name the upstream")
	}
	for _, v := range directive("proxy_read_timeout") {
		if d, err := time.ParseDuration(v); err != nil || d < 10*time.Minute {
			t.Errorf("proxy_read_timeout %s: want a long one for big downloads", v)
		}
	}

	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			t.Skip("nginx is not installed: skipping nginx -t (the checks above ran)")
		}
		nginx = "/usr/sbin/nginx"
	}
	// nginx -t resolves the upstream names, which exist only in the compose
	// network: test a copy whose servers are 127.0.0.1, with its pid file
	// here (nginx -t opens it).
	dir := t.TempDir()
	local := regexp.MustCompile(`(?m)^(\s*server\s+)[A-Za-z0-9_.-]+:`).ReplaceAllString(conf, "${1}127.0.0.1:")
	local = "pid " + filepath.Join(dir, "nginx.pid") + ";\n" + local
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-q", "-e", "stderr", "-p", dir+"/", "-c", path).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("Permission denied")) && os.Geteuid() != 0 {
			t.Skipf("nginx -t cannot run as this user (%s): skipping", bytes.TrimSpace(out))
		}
		t.Errorf("nginx -t (upstream servers replaced by 127.0.0.1): %v\n%s", err, out)
	}
}

// ---------------------------------------------------------------------------
// systemd

type unitFile map[string]map[string][]string // section → key → values

func parseUnit(text string) unitFile {
	u := unitFile{}
	sec := ""
	var cont strings.Builder
	for _, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if cont.Len() == 0 && (l == "" || l[0] == '#' || l[0] == ';') {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cont.WriteString(l)
		l = cont.String()
		cont.Reset()
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			sec = l[1 : len(l)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		if sec != "" {
			u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unitFile) last(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// systemdSeconds parses a systemd time span like 120, 120s, 2min, 1min 30s.
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.NewReplacer("min", "m", " ", "").Replace(s))
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	text := readFile(t, "systemd/hfcache.service")
	u := parseUnit(text)
	h := serveFlags(t)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}

	exec0 := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec0) < 2 || exec0[1] != "serve" {
		t.Fatalf("ExecStart %q: want /path/to/hfcache serve ...", exec0)
	}
	args := h.checkArgs(t, "ExecStart", exec0[2:])
	if u.last("Service", "User") == "" && u.last("Service", "DynamicUser") != "yes" {
		t.Error("the unit runs as root: set User= or DynamicUser=yes")
	}
	state := u.last("Service", "StateDirectory")
	if d := h.value(args, "data-dir"); state == "" || d != "/var/lib/"+state {
		t.Errorf("--data-dir %q and StateDirectory=%q: the data directory must be the state directory (the only writable path)", d, state)
	}
	if !slices.Contains(svc["EnvironmentFile"], "-/etc/hfcache/hfcache.env") {
		t.Errorf("EnvironmentFile %v, want -/etc/hfcache/hfcache.env", svc["EnvironmentFile"])
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"Restart": "on-failure",
	} {
		if got := u.last("Service", k); got != want {
			t.Errorf("%s=%q, want %s", k, got, want)
		}
	}
	if n, err := strconv.Atoi(u.last("Service", "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%q: want a number of at least 4096", u.last("Service", "LimitNOFILE"))
	}
	if d, err := systemdSeconds(u.last("Service", "TimeoutStopSec")); err != nil || d < minStopSeconds*time.Second {
		t.Errorf("TimeoutStopSec=%q: want at least %ds for a graceful stop (%v)", u.last("Service", "TimeoutStopSec"), minStopSeconds, err)
	}
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			h.checkEnvName(t, "Environment=", k)
		}
	}

	// The example environment file names only variables serve reads, and
	// ships no secret.
	envLine := regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)=(.*)$`)
	seen := 0
	for _, line := range strings.Split(readFile(t, "systemd/hfcache.env.example"), "\n") {
		m := envLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		seen++
		h.checkEnvName(t, "hfcache.env.example", m[1])
		if (strings.Contains(m[1], "SECRET") || strings.Contains(m[1], "TOKEN")) && m[2] != "" {
			t.Errorf("hfcache.env.example sets %s: an example must not ship a secret", m[1])
		}
	}
	if seen < 3 {
		t.Errorf("hfcache.env.example has only %d assignments", seen)
	}

	// systemd-analyze verify, on a copy whose ExecStart names the binary
	// built here (verify checks that the executable exists).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: skipping systemd-analyze verify (the checks above ran)")
	}
	bin := staticBinary(t)
	dir := t.TempDir()
	verify := func(name, unit string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, sa, "verify", "--man=no", p).CombinedOutput()
		return string(out), err
	}
	// A unit that must pass: if it does not, systemd-analyze cannot work in
	// this environment and its verdict on ours would mean nothing.
	if out, err := verify("control.service", "[Unit]\nDescription=control\n[Service]\nExecStart="+bin+" --version\n"); err != nil || strings.TrimSpace(out) != "" {
		t.Skipf("systemd-analyze verify does not work here (a trivial unit gives %v: %s): skipping it", err, strings.TrimSpace(out))
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(u.last("Service", "ExecStart"), "ExecStart="), " ")
	rewritten := strings.Replace(text, "ExecStart="+first+" ", "ExecStart="+bin+" ", 1)
	if rewritten == text {
		t.Fatalf("could not rewrite ExecStart=%s", first)
	}
	out, err := verify("hfcache.service", rewritten)
	if err != nil {
		t.Errorf("systemd-analyze verify hfcache.service (ExecStart rewritten to %s): %v\n%s", bin, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "hfcache.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// ---------------------------------------------------------------------------
// The probe paths answer on a running node.

// TestProbeRoutes starts the binary with the admin token in its environment
// (as every deployment here sets it) and asks the probe paths of the
// StatefulSet: they must answer 200 without the token, while the rest of
// the admin API demands it. Then SIGTERM must stop the node cleanly.
func TestProbeRoutes(t *testing.T) {
	t.Parallel()
	bin := staticBinary(t)
	var probes []string
	for _, d := range loadKustomization(t).byKind["StatefulSet"] {
		c := getList(d, "spec", "template", "spec", "containers")[0]
		for _, p := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			if path := getStr(c, p, "httpGet", "path"); path != "" {
				probes = append(probes, path)
			}
		}
	}
	if len(probes) == 0 {
		t.Fatal("no probes in the StatefulSet")
	}

	const token = "deploy-test-admin-token"
	cmd := exec.Command(bin, "serve",
		"--data-dir", t.TempDir(), "--cache-size", "64MiB", "--upstream", "http://127.0.0.1:9",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--log-format", "json")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "HFCACHE_") && !strings.HasPrefix(e, "HF_TOKEN=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "HFCACHE_ADMIN_TOKEN="+token)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	admin := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			logMu.Lock()
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			logMu.Unlock()
			var rec struct {
				Msg   string `json:"msg"`
				Admin string `json:"admin_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "hfcache serving" {
				admin <- rec.Admin
			}
		}
		done <- cmd.Wait()
	}()
	showLogs := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.String()
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-done
		}
	})

	var base string
	select {
	case a := <-admin:
		base = "http://" + a
	case err := <-done:
		stopped = true
		t.Fatalf("hfcache exited before serving: %v\n%s", err, showLogs())
	case <-time.After(30 * time.Second):
		t.Fatalf("hfcache did not serve within 30s:\n%s", showLogs())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	status := func(path string) int {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range probes {
		deadline := time.Now().Add(20 * time.Second) // /-/ready: once the configuration is applied
		for status(p) != http.StatusOK && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if s := status(p); s != http.StatusOK {
			t.Errorf("GET %s without the admin token: %d, want 200\n%s", p, s, showLogs())
		}
	}
	if s := status("/v1/store"); s != http.StatusUnauthorized {
		t.Errorf("GET /v1/store without the admin token: %d, want 401 (is HFCACHE_ADMIN_TOKEN read?)", s)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Errorf("after SIGTERM: %v (want exit status 0)\n%s", err, showLogs())
		}
		if took := time.Since(start); took > minStopSeconds*time.Second/2 {
			t.Errorf("an idle node took %v to stop after SIGTERM", took)
		}
	case <-time.After(minStopSeconds * time.Second):
		t.Errorf("the node did not stop within %ds of SIGTERM\n%s", minStopSeconds, showLogs())
	}
}

// ---------------------------------------------------------------------------

func readFileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	return string(readFileBytes(t, path))
}
