# proglog — see README.md.
SHELL := /bin/bash
GO ?= go
CONFIG_DIR ?= $(HOME)/.proglog
CFSSL_VERSION ?= v1.6.5
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
GOBIN ?= $(shell $(GO) env GOPATH)/bin
TEST_FLAGS ?=
BENCH ?= .
BENCH_FLAGS ?= -benchtime=2s -count=1

.PHONY: all build run test bench bench-logstore bench-cluster bench-footprint lint compile-proto check-proto gencert chaos gencert-kube

all: build

## build: the single binary, $(BIN) (bin/proglog): static (no C library) and with no build paths in it, so that
## the container image (deploy/Dockerfile runs `make build BIN=/out/proglog`) holds the same binary.
BIN ?= bin/proglog
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/proglog

## run: a three-node cluster of bin/proglog processes on $(RUN_HOST), node 1 bootstrapping, data and
## logs in $(RUN_DIR)/; Ctrl-C stops every node. Override e.g. RPC_PORTS="9401 9402 9403".
RUN_DIR ?= .data
RUN_HOST ?= 127.0.0.1
RPC_PORTS ?= 8401 8402 8403
HTTP_PORTS ?= 8080 8081 8082
SERF_PORTS ?= 8301 8302 8303
run: gencert build
	@RUN_BIN='$(BIN)' RUN_DIR='$(RUN_DIR)' RUN_CONFIG_DIR='$(CONFIG_DIR)' RUN_HOST='$(RUN_HOST)' \
		RUN_RPC_PORTS='$(RPC_PORTS)' RUN_HTTP_PORTS='$(HTTP_PORTS)' RUN_SERF_PORTS='$(SERF_PORTS)' \
		bash deploy/run-local.sh

## test: the full suite, with the race detector (needs certificates: gencert).
test: gencert
	PROGLOG_CONFIG_DIR=$(CONFIG_DIR) $(GO) test -race -count=1 -timeout 15m $(TEST_FLAGS) ./...

## chaos: randomized faults (kills, pauses, partitions, corruption, disk full) against $(NODES) proglog processes for
## $(DURATION) while clients write, then the checks (lost, divergent, duplicates, linearizable) and write stalls per
## fault kind; SEED replays a run (0: a new one, printed). See README "Failover testing".
DURATION ?= 5m
NODES ?= 3
SEED ?= 0
chaos:
	$(GO) test -run '^TestChaos$$' -count=1 -timeout 0 -v ./test/chaos -args \
		-chaos.duration $(DURATION) -chaos.nodes $(NODES) -chaos.seed $(SEED)

## bench: storage-engine benchmarks (go test -bench); compare runs with benchstat. They include
## BenchmarkLogStore: hashicorp/raft's LogStore bench functions against distlog's Raft log store and, as a
## yardstick on the same disk, raft-wal (a test-only dependency); `make bench-logstore` runs just those,
## $(LOGSTORE_COUNT) times, for benchstat.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(BENCH_FLAGS) ./distlog/...

## bench-cluster: a three-node cluster of $(BIN) on ports 9501-9503 (deploy/bench-cluster.sh), the README
## Performance table's workloads with proglog bench (one line each: records/s, MB/s, p50/p99), node RSS; then
## stops it. BENCH_SCALE=N multiplies the record counts.
bench-cluster: gencert build
	@RUN_BIN='$(BIN)' RUN_CONFIG_DIR='$(CONFIG_DIR)' bash deploy/bench-cluster.sh

## bench-footprint: a three-node cluster of $(BIN) on ports 9741-9743 (deploy/bench-footprint.sh), batches of
## records written up to each of FOOTPRINT_COUNTS; at each, every node's RSS (anonymous, file-backed, Go heap)
## and disk (topics, Raft log, snapshots) against what the records need; then stops it.
FOOTPRINT_COUNTS ?= 1000000 5000000
bench-footprint: gencert build
	@RUN_BIN='$(BIN)' RUN_CONFIG_DIR='$(CONFIG_DIR)' FOOTPRINT_COUNTS='$(FOOTPRINT_COUNTS)' bash deploy/bench-footprint.sh

LOGSTORE_COUNT ?= 6
bench-logstore:
	$(GO) test -run '^$$' -bench 'BenchmarkLogStore' -benchmem -count $(LOGSTORE_COUNT) ./distlog

## lint: gofmt must print nothing; go vet must pass.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## compile-proto: regenerate api/v1 from log.proto, and the book's wire format that the compatibility
## test speaks (test/bookcompat/bookv1), with protoc from Debian's protobuf-compiler. One protoc run per
## file: both declare package log.v1, which one run refuses.
PROTO_FILES = api/v1/log.proto test/bookcompat/bookv1/log.proto
compile-proto:
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	for f in $(PROTO_FILES); do \
		PATH="$(GOBIN):$$PATH" protoc --proto_path=. \
			--go_out=. --go_opt=paths=source_relative \
			--go-grpc_out=. --go-grpc_opt=paths=source_relative \
			"$$f" || exit 1; \
	done

## check-proto: fail when the committed generated code is stale.
check-proto: compile-proto
	@git diff --exit-code -- api/v1 test/bookcompat/bookv1 || { echo "generated code is stale; run make compile-proto and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- api/v1 test/bookcompat/bookv1); \
	if [ -n "$$untracked" ]; then echo "generated code not committed: $$untracked"; exit 1; fi

## gencert: CA, server and client certificates, the gossip key and the ACL files, into $(CONFIG_DIR).
## Skips the certificates and the key that already exist (a new CA reissues everything it signed);
## the ACL files are copied whenever they differ, so a policy edit in test/ takes effect.
CFSSL = GOFLAGS=-buildvcs=false $(GO) run github.com/cloudflare/cfssl/cmd/cfssl@$(CFSSL_VERSION)
CFSSLJSON = GOFLAGS=-buildvcs=false $(GO) run github.com/cloudflare/cfssl/cmd/cfssljson@$(CFSSL_VERSION)
gencert:
	@set -euo pipefail; dir='$(CONFIG_DIR)'; mkdir -p "$$dir"; \
	sign() { $(CFSSL) gencert -loglevel=3 -ca="$$dir/ca.pem" -ca-key="$$dir/ca-key.pem" \
		-config=test/ca-config.json "$$@"; }; \
	if [ ! -s "$$dir/ca.pem" ] || [ ! -s "$$dir/ca-key.pem" ]; then \
		echo "gencert: new CA in $$dir"; \
		rm -f "$$dir"/server.pem "$$dir"/server-key.pem "$$dir"/*-client.pem "$$dir"/*-client-key.pem; \
		$(CFSSL) gencert -loglevel=3 -initca test/ca-csr.json | $(CFSSLJSON) -bare "$$dir/ca"; \
	fi; \
	if [ ! -s "$$dir/server.pem" ] || [ ! -s "$$dir/server-key.pem" ]; then \
		echo "gencert: server certificate (localhost, 127.0.0.1; server and client auth)"; \
		sign -profile=server test/server-csr.json | $(CFSSLJSON) -bare "$$dir/server"; \
	fi; \
	for cn in root nobody; do \
		if [ ! -s "$$dir/$$cn-client.pem" ] || [ ! -s "$$dir/$$cn-client-key.pem" ]; then \
			echo "gencert: client certificate CN=$$cn"; \
			sign -profile=client -cn="$$cn" test/client-csr.json | $(CFSSLJSON) -bare "$$dir/$$cn-client"; \
		fi; \
	done; \
	if [ ! -s "$$dir/gossip.key" ]; then \
		echo "gencert: gossip encryption key (gossip.key)"; \
		(umask 077; head -c 32 /dev/urandom | base64 > "$$dir/gossip.key"); \
	fi; \
	rm -f "$$dir"/*.csr; \
	for f in model.conf policy.csv; do cmp -s "test/$$f" "$$dir/$$f" || cp "test/$$f" "$$dir/$$f"; done

## gencert-kube: the certificate of the Helm chart's nodes (deploy/proglog), signed by the gencert CA: for every pod
## of release fullname $(NAME) in $(NAMESPACE) (*.$(NAME)-headless.$(NAMESPACE).svc.$(CLUSTER_DOMAIN)) and for the
## client Service, plus $(EXTRA_HOSTS) (comma-separated: a load balancer's name). Writes
## $(CONFIG_DIR)/kube/$(NAME).$(NAMESPACE)/server.pem and server-key.pem, and prints the kubectl commands that make
## the chart's Secrets (TLS, client TLS, and the gossip key from $(CONFIG_DIR)/gossip.key).
NAME ?= proglog
NAMESPACE ?= default
CLUSTER_DOMAIN ?= cluster.local
EXTRA_HOSTS ?=
gencert-kube: gencert
	@set -euo pipefail; dir='$(CONFIG_DIR)'; out="$$dir/kube/$(NAME).$(NAMESPACE)"; mkdir -p "$$out"; \
	hosts='*.$(NAME)-headless.$(NAMESPACE).svc.$(CLUSTER_DOMAIN),*.$(NAME)-headless.$(NAMESPACE).svc'; \
	hosts="$$hosts,$(NAME),$(NAME).$(NAMESPACE),$(NAME).$(NAMESPACE).svc,$(NAME).$(NAMESPACE).svc.$(CLUSTER_DOMAIN)"; \
	hosts="$$hosts,localhost,127.0.0.1$(if $(EXTRA_HOSTS),$(comma)$(EXTRA_HOSTS))"; \
	$(CFSSL) gencert -loglevel=3 -ca="$$dir/ca.pem" -ca-key="$$dir/ca-key.pem" -config=test/ca-config.json \
		-profile=server -hostname="$$hosts" test/server-csr.json | $(CFSSLJSON) -bare "$$out/server"; \
	rm -f "$$out"/*.csr; \
	echo "gencert-kube: $$out/server.pem for $$hosts"; \
	echo "Create the chart's Secrets (release fullname $(NAME), namespace $(NAMESPACE)):"; \
	echo "  kubectl -n $(NAMESPACE) create secret generic $(NAME)-tls --from-file=tls.crt=$$out/server.pem --from-file=tls.key=$$out/server-key.pem --from-file=ca.crt=$$dir/ca.pem"; \
	echo "  kubectl -n $(NAMESPACE) create secret generic $(NAME)-client-tls --from-file=tls.crt=$$dir/root-client.pem --from-file=tls.key=$$dir/root-client-key.pem --from-file=ca.crt=$$dir/ca.pem"; \
	echo "  kubectl -n $(NAMESPACE) create secret generic $(NAME)-gossip --from-file=gossip.key=$$dir/gossip.key"
comma := ,
