# Hindsight. `make help` lists the targets. The two that matter:
#   make demo   a local cluster with a metrics API serving `kubectl top`
#   make test   every test: unit (-race), integration and end-to-end
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
OUT       := _output
FUZZTIME  ?= 20s
E2E_TIMEOUT ?= 45m
# The micro-benchmarks of make bench: decode, append, clock check, current window, LIST path, fleet body.
MICRO_BENCH ?= ^Benchmark(Decode|Write|CheckClock|PodUsage|List|NodeBody)$$

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/hindsight
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hindsight ./cmd/hindsight
	@echo "built bin/hindsight $(VERSION)"

$(OUT)/bin/lab: FORCE
	@mkdir -p $(OUT)/bin
	@$(GO) build -o $@ ./test/cmd/lab

.PHONY: image
image: ## build the OCI image (linux/amd64 and linux/arm64, no container engine) into _output/image
	$(GO) -C deploy/image run . -repo ../.. -out ../../$(OUT)/image -version $(VERSION)

.PHONY: tools
tools: $(OUT)/bin/lab ## build the local control plane (etcd, kube-apiserver, kube-controller-manager, kubectl, kwok, metrics-server) from Go modules; minutes the first time, then cached
	@echo "==> control-plane tools (the first build on a machine takes 15-25 minutes on 2 cores; progress every 30s)"
	@$(OUT)/bin/lab tools

.PHONY: test
test: verify test-unit test-e2e ## run every test: formatting and vet, unit and integration (-race), end-to-end on a local control plane
	@echo "==> make test: all passed"

.PHONY: verify
verify: ## gofmt and go vet
	@echo "==> gofmt"
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*')); \
	  if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@echo "==> go vet"
	@$(GO) vet ./...

.PHONY: test-unit
test-unit: ## unit and integration tests with the race detector (end-to-end tests skip under -short)
	@echo "==> unit and integration tests (-race -short)"
	$(GO) test -race -short -count=1 ./...
	@echo "==> image build (deploy/image: two builds, one digest)"
	$(GO) -C deploy/image test -count=1 -timeout 20m ./...

.PHONY: test-e2e
test-e2e: tools ## end-to-end tests against a real local control plane
	@echo "==> end-to-end tests (a local control plane per test; about a minute each)"
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/...
	@echo "==> a small side-by-side benchmark run (bench/scale; after the end-to-end tests, whose latency checks it would skew)"
	$(GO) test -count=1 -timeout 15m -v ./bench/scale/

.PHONY: e2e
e2e: test-e2e ## alias of test-e2e

.PHONY: fuzz
fuzz: ## run every fuzz test for FUZZTIME each (default 20s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "==> $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: bench
bench: tools ## micro-benchmarks (5 counts, benchstat-comparable, in _output/bench.txt) and the 100x30 side-by-side run against metrics-server (bench/results); about 10 minutes
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench '$(MICRO_BENCH)' -benchmem -count 5 ./scraper/ ./tsdb/ ./apiserver/ ./bench/fleet/ | tee $(OUT)/bench.txt
	$(GO) run ./bench/cmd/scale -scenarios 100x30 -out bench/results

.PHONY: bench-full
bench-full: tools ## the 1000x30 and 5000x30 side-by-side runs (bench/results; about an hour) and every micro-benchmark, history queries included
	$(GO) run ./bench/cmd/scale -scenarios 1000x30,5000x30 -out bench/results
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 60m ./... | tee $(OUT)/bench-full.txt

.PHONY: lint
lint: verify ## gofmt, go vet and golangci-lint (pinned in test/tools/lint)
	@echo "==> golangci-lint"
	$(GO) tool -modfile=test/tools/lint/go.mod golangci-lint run ./...

.PHONY: demo
demo: tools ## run a local cluster with a simulated fleet and a metrics server; Ctrl-C stops everything
	@$(OUT)/bin/lab demo

.PHONY: clean
clean: ## remove build output (the tools cache in ~/.cache/hindsight stays; HINDSIGHT_TOOLS_CACHE moves it)
	rm -rf bin $(OUT)

.PHONY: FORCE
FORCE:
