// Command fakehub runs the fake Hugging Face Hub and its CDN as a standalone
// server, seeded with a few demo repositories, for manual tests with real
// clients (HF_ENDPOINT=http://127.0.0.1:9000).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "Hub listen address")
	cdnListen := flag.String("cdn-listen", "127.0.0.1:9001", "CDN listen address")
	hubURL := flag.String("url", "", "advertised Hub URL (default http://<listen>)")
	cdnURL := flag.String("cdn-url", "", "advertised CDN URL (default http://localhost:<cdn port>)")
	casURL := flag.String("cas-url", "", "advertised Xet CAS URL, served by the CDN listener (default: the CDN URL)")
	var tokens, grants listFlag
	flag.Var(&tokens, "token", "valid token as TOKEN=USER (repeatable)")
	flag.Var(&grants, "grant", "token granted access to the gated and private demo repos (repeatable)")
	pageSize := flag.Int("page-size", 0, "tree page size (0 = the Hub's 1000/50)")
	bigSize := flag.Int64("big", 0, "also serve fakehub/big-model with one LFS file big.bin of this many bytes (generated, not held in memory)")
	bigXet := flag.Int64("big-xet", 0, "also serve fakehub/big-xet-model with one Xet file big.bin of this many bytes (generated; uncompressed chunks are not held in memory)")
	xorbLimit := flag.Int64("xorb-limit", 0, "largest xorb in bytes for Xet files (0 = 64 MiB)")
	rate := flag.Int64("rate", 0, "cap every response body (Hub and CDN, per connection) at this many bytes per second (0 = no cap)")
	var files listFlag
	flag.Var(&files, "file", "also serve PATH of SIZE bytes in fakehub/bench-model as PATH:SIZE (repeatable; generated content, LFS when SIZE >= 1 MiB)")
	statsListen := flag.String("stats-listen", "", "also serve GET /cdn here: JSON {body_bytes, last_byte_unix_nano} of what the CDN has sent (for the benchmark)")
	flag.Parse()

	h := fakehub.New()
	h.SetXorbLimit(*xorbLimit)
	seed(h)
	if *bigXet > 0 {
		h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/big-xet-model", Files: []fakehub.File{
			{Path: "big.bin", Size: *bigXet, Seed: 43, Xet: true},
		}})
	}
	if *bigSize > 0 {
		h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/big-model", Files: []fakehub.File{
			{Path: "big.bin", Size: *bigSize, Seed: 42, LFS: true},
		}})
	}
	if len(files) > 0 {
		var fs []fakehub.File
		for i, f := range files {
			path, size, ok := strings.Cut(f, ":")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || path == "" || err != nil || n <= 0 {
				log.Fatalf("fakehub: -file %q: want PATH:SIZE", f)
			}
			fs = append(fs, fakehub.File{Path: path, Size: n, Seed: int64(1000 + i), LFS: n >= 1<<20})
		}
		h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/bench-model", Files: fs})
	}
	for _, t := range tokens {
		tok, user, ok := strings.Cut(t, "=")
		if !ok || tok == "" || user == "" {
			log.Fatalf("fakehub: -token %q: want TOKEN=USER", t)
		}
		h.AddToken(tok, user)
	}
	for _, g := range grants {
		h.AddToken(g, tokenUser(tokens, g))
		h.Grant(g, hf.Model, "fakehub/gated-model")
		h.Grant(g, hf.Model, "fakehub/private-model")
	}
	h.SetPageSize(*pageSize)
	h.SetURLs(*hubURL, *cdnURL)
	if *casURL != "" {
		h.SetCASURL(*casURL)
	}
	if *rate > 0 {
		h.SetThrottle(*rate, 0)
	}
	if err := h.StartOn(*listen, *cdnListen); err != nil {
		log.Fatalf("fakehub: %v", err)
	}
	if *statsListen != "" {
		ln, err := net.Listen("tcp", *statsListen)
		if err != nil {
			log.Fatalf("fakehub: -stats-listen: %v", err)
		}
		defer ln.Close()
		go http.Serve(ln, statsHandler(h))
		fmt.Printf("fakehub stats: http://%s/cdn\n", ln.Addr())
	}
	fmt.Printf("fakehub Hub: %s\nfakehub CDN: %s\nfakehub Xet CAS: %s\n", h.URL(), h.CDNURL(), h.CASURL())
	fmt.Printf("repos: fakehub/demo-model, datasets/fakehub/demo-dataset, fakehub/gated-model (gated), fakehub/private-model (private), gpt2 -> fakehub/demo-model\n")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	h.Close()
}

// CDNStats is what GET /cdn on -stats-listen answers: fakehub.Hub.CDNBody.
type CDNStats struct {
	BodyBytes        int64 `json:"body_bytes"`
	LastByteUnixNano int64 `json:"last_byte_unix_nano"` // 0: nothing sent yet
}

func statsHandler(h *fakehub.Hub) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cdn", func(w http.ResponseWriter, _ *http.Request) {
		n, last := h.CDNBody()
		st := CDNStats{BodyBytes: n}
		if !last.IsZero() {
			st.LastByteUnixNano = last.UnixNano()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	return mux
}

// tokenUser is the user a -token flag gave tok, or "granted-user".
func tokenUser(tokens []string, tok string) string {
	for _, t := range tokens {
		if k, u, _ := strings.Cut(t, "="); k == tok {
			return u
		}
	}
	return "granted-user"
}

// seed creates the demo repositories.
func seed(h *fakehub.Hub) {
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/demo-model", Files: []fakehub.File{
		{Path: ".gitattributes", Data: []byte("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")},
		{Path: "config.json", Data: []byte(`{"model_type": "gpt2", "n_layer": 2}` + "\n")},
		{Path: "README.md", Data: []byte("# demo model\n")},
		{Path: "tokenizer/vocab.txt", Data: []byte("hello\nworld\n")},
		{Path: "sub dir/ünïcode file+1.txt", Data: []byte("unicode\n")},
		{Path: "model.safetensors", Size: 8 << 20, Seed: 1, LFS: true},
		// Partly compressible, so its xorbs hold None, LZ4 and ByteGrouping4LZ4 chunks.
		{Path: "xet/model-xet.safetensors", Size: 3 << 20, Seed: 2, Xet: true, Compressible: true},
		// Shares its first 1 MiB with model-xet.safetensors: chunks deduplicated.
		{Path: "xet/model-xet-v2.safetensors", Size: 2 << 20, Seed: 5, PrefixSeed: 2, PrefixLen: 1 << 20, Xet: true, Compressible: true},
	}})
	h.SetRef(hf.Model, "fakehub/demo-model", "v1.0", "main")
	h.Commit(hf.Model, "fakehub/demo-model", "refs/pr/1", []fakehub.File{{Path: "config.json", Data: []byte(`{"model_type": "gpt2", "n_layer": 4}` + "\n")}}, nil)
	h.Alias(hf.Model, "fakehub/demo-model", "gpt2")

	h.AddRepo(fakehub.RepoSpec{Type: hf.Dataset, ID: "fakehub/demo-dataset", Files: []fakehub.File{
		{Path: "README.md", Data: []byte("---\nconfigs:\n- config_name: default\n---\n")},
		{Path: "data/train.csv", Data: []byte("a,b\n1,2\n3,4\n")},
	}})
	h.Commit(hf.Dataset, "fakehub/demo-dataset", "refs/convert/parquet", []fakehub.File{
		{Path: "default/train/0000.parquet", Size: 256 << 10, Seed: 3, LFS: true},
	}, []string{"data/train.csv", "README.md"})

	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/gated-model", Gated: "manual", Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"gated": true}` + "\n")},
		{Path: "model.safetensors", Size: 1 << 20, Seed: 4, LFS: true},
	}})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "fakehub/private-model", Private: true, Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"private": true}` + "\n")},
	}})
}
