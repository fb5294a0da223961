# raftkv build and test entry points. `make test` is what CI runs.
GO      ?= go
PKGS    ?= ./...
BIN     ?= bin
FUZZTIME ?= 30s

.PHONY: all build test test-race test-short lint vet fmt-check bench bench-etcd fuzz run clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## test: vet, gofmt check, and the whole suite under the race detector.
test: vet fmt-check
	$(GO) test -race -timeout 9m $(PKGS)

## test-short: the suite without the race detector (faster local loop).
test-short:
	$(GO) test -timeout 9m $(PKGS)

test-race: test

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint: vet fmt-check

## bench: every benchmark once, with allocation counts.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## bench-etcd: raftkv against a local 3-member etcd, side by side (needs etcd; see bench/vsetcd/README.md).
bench-etcd:
	bench/vsetcd/run.sh $(BENCH_ETCD_ARGS)

## fuzz: run each fuzz target for FUZZTIME.
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## run: a local cluster (entrance + three raftd) on loopback, in the foreground.
run:
	@if [ -x deploy/local-cluster.sh ]; then deploy/local-cluster.sh; \
	else echo "raftd and entrance are not built yet (see issues); 'make test' runs what exists."; fi

clean:
	rm -rf $(BIN)
