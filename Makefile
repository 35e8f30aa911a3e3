# hfcache — the front door. `make run` starts a node, `make test` installs
# what the tests need and runs them all.
GO      ?= go
BIN     := bin/hfcache
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test deps check vet fmt clean fakehub fuzz

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hfcache

# A node on the defaults: data under ./hfcache-data, upstream https://huggingface.co.
run: build
	./$(BIN) serve

# The fake Hub with demo repositories, for trying the cache without internet.
fakehub:
	$(GO) run ./test/fakehub/cmd/fakehub

# Everything the tests need: Go modules, the pinned npm packages of the
# real Hugging Face client the end-to-end tests drive, iproute2 (the
# partition test puts nodes in network namespaces), chromium (the status
# page test renders the page headless) and wrk (the bench's smoke run
# drives P2 with it too).
deps:
	$(GO) mod download
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
		(echo "installing Node.js from Debian's packages"; apt-get update -qq && apt-get install -y -qq nodejs npm)
	@command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || \
		(echo "installing iproute2 (ip netns, for the partition test) from Debian's packages"; apt-get update -qq && apt-get install -y -qq iproute2)
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
		(echo "installing chromium (headless, for the status page test) from Debian's packages"; apt-get update -qq && apt-get install -y -qq chromium)
	@command -v wrk >/dev/null 2>&1 || \
		(echo "installing wrk (P2's second load generator, for the bench's smoke run) from Debian's packages"; apt-get update -qq && apt-get install -y -qq wrk)
	cd test/js && npm ci --no-audit --no-fund --loglevel=error

check: vet
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: deps check
	$(GO) test -race -count=1 -timeout 9m ./...

# Each fuzz target for FUZZTIME (make test runs their seed corpora only).
FUZZTIME ?= 30s
fuzz:
	@for t in httpapi:FuzzParseRoute httpapi:FuzzParseRanges httpapi:FuzzRewriteLink httpapi:FuzzAdminPut httpapi/h1:FuzzParse httpapi/h1:FuzzParseTarget; do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "== $$fn in $$pkg ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/ || exit 1; \
	done

clean:
	rm -rf bin

# The fake Hub, three nodes and a round-robin load balancer on loopback; the
# real @huggingface/hub client downloads a model and a dataset through the
# balancer twice, and the demo prints which node served each file and from
# where (upstream, peer, disk). Stops everything at the end.
.PHONY: demo
demo: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hfcache
	$(GO) build -o bin/fakehub ./test/fakehub/cmd/fakehub
	$(GO) run ./test/demo -hfcache $(BIN) -fakehub bin/fakehub

# Side-by-side benchmark: hfcache vs nginx (proxy_cache) in front of the same
# fake Hub; installs nginx and wrk (P2's second load generator) from
# Debian's packages if missing, writes bench-results.json. BENCHFLAGS=-quick
# for a smoke run (docs/PERFORMANCE.md).
BENCHFLAGS ?=
.PHONY: bench
bench:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hfcache
	$(GO) build -o bin/fakehub ./test/fakehub/cmd/fakehub
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || \
		(echo "installing nginx from Debian's packages"; apt-get update -qq && apt-get install -y -qq nginx)
	@command -v wrk >/dev/null 2>&1 || \
		(echo "installing wrk from Debian's packages"; apt-get update -qq && apt-get install -y -qq wrk)
	@[ -d test/js/node_modules/@huggingface/hub ] || ! command -v npm >/dev/null 2>&1 || \
		(echo "installing @huggingface/hub for the XET phase"; cd test/js && npm ci --no-audit --no-fund --loglevel=error)
	$(GO) run ./test/bench -hfcache $(BIN) -fakehub bin/fakehub \
		-nginx "$$(command -v nginx || echo /usr/sbin/nginx)" -wrk "$$(command -v wrk)" -json bench-results.json $(BENCHFLAGS)
