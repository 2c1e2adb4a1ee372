# Berth: build, test and benchmark.
#
#   make build   static binary bin/berth (CGO_ENABLED=0, -trimpath, version stamped)
#   make test    everything: prerequisites, go vet, unit tests with -race (the S3
#                driver against versitygw included), and the integration suite
#                (conformance, real clients, test images, layout compatibility with
#                docker-registry, berth on S3, two replicas on one bucket); prints
#                timings; what `.ci/run` does
#   make bench   berth next to CNCF Distribution v3 and Debian's docker-registry:
#                blob push/pull, manifest GETs, with dd conv=fdatasync as the push
#                baseline and Go's http.FileServer as the pull baseline; then
#                berth on S3 (versitygw) with redirect on and off; then berth gc
#                against docker-registry garbage-collect on 2,000 images; then a
#                1 GiB blob GET through berth's pull-through cache against
#                docker-registry's proxy mode; then the web UI's pages over 1,000
#                repositories and 10,000 tags; then zot's benchmark (zb) against
#                berth with its peak memory; then berth run against runc and
#                crun, berth pull against skopeo + umoci, berth push against
#                skopeo copy, berth build against buildctl build and buildah bud
#   make bench-gc   only berth gc against docker-registry garbage-collect
#   make bench-proxy only a 1 GiB blob GET through berth's pull-through cache
#                against docker-registry in proxy mode (same upstream berth):
#                first byte and total, cold and warm, and the upstream's local
#                content as the warm GET's baseline
#   make bench-ui   only the web UI's pages (server time) over 1,000 repositories
#                and 10,000 tags, against the 100 ms target
#   make bench-zb   only zot's benchmark (zb, 3 runs) against berth serve with its
#                defaults, and berth's peak memory, next to issue 19's reference
#                (ZB_BASELINE=BIN: an older berth too, in turns, and the ratio)
#   make bench-run  only berth run (warm start) against runc and crun run of its
#                bundle, and berth pull of debian against skopeo copy + umoci unpack
#   make bench-push only berth push of debian against skopeo copy, cold and warm
#   make bench-build only berth build against buildctl build (buildkitd) and
#                buildah bud of three Dockerfiles, cold and as a no-change rebuild
#   make lint    gofmt -l and go vet
#   make fuzz    every Go fuzz target (go test -list '^Fuzz' ./...), one at a
#                time for FUZZTIME each (default 30s), then a table of
#                executions per target; a crash fails it, and Go writes the
#                input to the package's testdata/fuzz/ (`make test` runs
#                those, and every target's seed corpus, as unit tests)
#
# The registry test harness (shared, read-only) lives in $(HARNESS). versitygw,
# the S3 server the tests run the S3 driver against, and Distribution v3, a
# peer of make bench, are installed in $(BERTH_TOOLS).
HARNESS ?= ../shared/harness
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
BIN ?= bin/berth
UNIT_TIMEOUT ?= 5m
INTEGRATION_TIMEOUT ?= 30m
# versitygw: a local S3 server (posix backend) for the S3 driver's tests,
# the S3 integration tests and the S3 bench. The tests find it through
# the VERSITYGW variable; BERTH_REQUIRE_S3=1 makes its absence a failure, not a skip.
BERTH_TOOLS ?= $(HOME)/.cache/berth-tools
VERSITYGW_VERSION := v1.8.0
VERSITYGW_BIN := $(BERTH_TOOLS)/versitygw
S3_TEST_ENV := BERTH_REQUIRE_S3=1 VERSITYGW=$(VERSITYGW_BIN) BERTH_REQUIRE_RUNNER=1
# CNCF Distribution v3 (its cmd/registry), make bench's second peer.
DISTRIBUTION_VERSION := v3.1.2
DISTRIBUTION_BIN := $(BERTH_TOOLS)/registry
# BuildKit (buildkitd + buildctl of Docker 28), the reference berth build's
# integration tests compare with; built from the module proxy's source.
BUILDKIT_VERSION := v0.22.0
BUILDKIT_ENV := BUILDKITD=$(BERTH_TOOLS)/buildkitd BUILDCTL=$(BERTH_TOOLS)/buildctl

export PATH := $(PATH):/usr/local/go/bin
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

HARNESS_DIR := $(abspath $(HARNESS))
TIMED := scripts/timed.sh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: build test fuzz prereqs versitygw distribution buildkit vet unit integration bench bench-gc bench-proxy bench-ui bench-run bench-push bench-build bench-run-tools lint wrk help
.DEFAULT_GOAL := help

help:
	@sed -n '3,38p' Makefile | sed 's/^# \{0,1\}//'

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN) ./cmd/berth
	@echo "built $(BIN) ($(VERSION))"

# Every step runs even if an earlier one failed (a vet finding should not hide
# the integration results); the exit status says whether all passed.
test:
	@export BERTH_TIMINGS=$$(mktemp); trap 'rm -f "$$BERTH_TIMINGS"' EXIT; rc=0; \
	for step in prereqs vet unit integration; do \
	  $(TIMED) $$step $(MAKE) --no-print-directory $$step || rc=1; \
	done; \
	$(TIMED) --summary "$$BERTH_TIMINGS"; \
	if [ $$rc -ne 0 ]; then echo "make test: FAILED (see the steps above)"; exit 1; fi; \
	echo "make test: all passed"

# Clients, the conformance suite, docker-registry, versitygw, and what the
# runner's tests use (busybox-static for test root filesystems, runc to run
# `berth bundle` output, and under BuildKit's oci worker; containerd for ctr run
# of what berth build --push pushed; chromium for the web UI's browser tests,
# driven by chromedp; nftables and iproute2 for the bridge networks' tests;
# e2fsprogs for the full-disk test's ext4); a no-op when present.
RUNNER_PACKAGES := busybox-static runc containerd chromium nftables iproute2 e2fsprogs
prereqs: versitygw buildkit
	@[ -x "$(HARNESS_DIR)/install-clients.sh" ] || { echo "harness not found in $(HARNESS_DIR) (set HARNESS=DIR)"; exit 1; }
	$(HARNESS_DIR)/install-clients.sh all docker-registry
	@missing=$$(for p in $(RUNNER_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Installed through the Go module proxy, unless the binary there already is
# that version (read from its build information).
versitygw:
	@have=$$($(GO) version -m "$(VERSITYGW_BIN)" 2>/dev/null | awk '$$1 == "mod" && $$2 == "github.com/versity/versitygw" { print $$3 }' || true); \
	if [ "$$have" = "$(VERSITYGW_VERSION)" ]; then \
	  echo "versitygw $$have: $(VERSITYGW_BIN)"; \
	else \
	  echo "installing versitygw $(VERSITYGW_VERSION) into $(BERTH_TOOLS) (found: $${have:-none})"; \
	  GOBIN="$(BERTH_TOOLS)" $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

# Installed through the Go module proxy like versitygw, unless the binary
# there already is that version.
distribution:
	@have=$$($(GO) version -m "$(DISTRIBUTION_BIN)" 2>/dev/null | awk '$$1 == "mod" && $$2 == "github.com/distribution/distribution/v3" { print $$3 }' || true); \
	if [ "$$have" = "$(DISTRIBUTION_VERSION)" ]; then \
	  echo "distribution $$have: $(DISTRIBUTION_BIN)"; \
	else \
	  echo "installing distribution $(DISTRIBUTION_VERSION) into $(BERTH_TOOLS) (found: $${have:-none})"; \
	  GOBIN="$(BERTH_TOOLS)" $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(DISTRIBUTION_VERSION); \
	fi

# buildkitd and buildctl for the build oracle (integration/build_oracle_test.go);
# `go install pkg@version` refuses BuildKit's module (exclude directives in its
# go.mod), so the script builds the proxy's source; a no-op when the binaries
# there already are that version. About 10 minutes on 2 cores the first time.
buildkit:
	@GO=$(GO) scripts/install-buildkit.sh $(BUILDKIT_VERSION) $(BERTH_TOOLS)

vet:
	$(GO) vet ./...

# Unit and driver tests; the integration tests skip here (no BERTH_INTEGRATION).
# The S3 driver suite runs against versitygw and may not skip.
# A bounded timeout: one hung test must not eat the whole budget.
unit:
	env -u BERTH_INTEGRATION $(S3_TEST_ENV) $(GO) test -race -timeout $(UNIT_TIMEOUT) ./...

# Test artifacts (the web UI's browser screenshots) go to $(ARTIFACTS).
ARTIFACTS ?= test-artifacts
integration:
	@mkdir -p $(ARTIFACTS)
	BERTH_INTEGRATION=1 BERTH_HARNESS=$(HARNESS_DIR) $(S3_TEST_ENV) $(BUILDKIT_ENV) $(GO) test ./integration/ ./runner/pull/ -v -count=1 -timeout $(INTEGRATION_TIMEOUT) -artifacts -outputdir $(abspath $(ARTIFACTS))

# Fuzzing, one target at a time with FUZZ_WORKERS workers. The minimization
# of each new interesting input is bounded too (Go's default, 60s, would
# stall short runs); a crash's input is still written whole.
FUZZTIME ?= 30s
FUZZ_WORKERS ?= 2
FUZZMINIMIZETIME ?= 2s
fuzz:
	@summary=$$(mktemp); trap 'rm -f "$$summary"' EXIT; rc=0; \
	targets=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $$1; next } \
	  /^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print $$2, a[i]; names = "" }'); \
	[ -n "$$targets" ] || { echo "no fuzz targets found"; exit 1; }; \
	while read -r pkg name; do \
	  echo "== $$pkg $$name ($(FUZZTIME))"; \
	  for try in 1 2; do \
	    status=ok; \
	    out=$$($(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) \
	      -fuzzminimizetime $(FUZZMINIMIZETIME) -parallel $(FUZZ_WORKERS) 2>&1) || status=FAILED; \
	    if [ $$status = FAILED ]; then echo "$$out" | grep -v '^fuzz: elapsed' | tail -40; fi; \
	    if [ $$status = ok ] || echo "$$out" | grep -q 'Failing input written to\|failure while testing seed corpus'; then break; fi; \
	    if [ $$try = 1 ]; then echo "(no failing input: an error of the fuzzing engine on a busy machine? once more)"; fi; \
	  done; \
	  [ $$status = ok ] || rc=1; \
	  execs=$$(echo "$$out" | grep -o 'execs: [0-9]*' | tail -1 | cut -d' ' -f2 || true); \
	  printf '%-52s %-22s %12s  %s\n' "$${pkg#github.com/berth-registry/berth/}" "$$name" "$${execs:-0}" "$$status" >> "$$summary"; \
	done <<< "$$targets"; \
	echo; printf '%-52s %-22s %12s  %s\n' package target execs result; cat "$$summary"; \
	if [ $$rc -ne 0 ]; then echo "make fuzz: FAILED (inputs in the packages' testdata/fuzz/)"; exit 1; fi; \
	echo "make fuzz: no crash in $$(wc -l < "$$summary") targets"

lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

wrk:
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

bench: build wrk versitygw distribution buildkit bench-run-tools
	@$(HARNESS_DIR)/install-clients.sh docker-registry
	$(TIMED) bench $(GO) run ./bench -berth $(BIN) -distribution $(DISTRIBUTION_BIN) -versitygw $(VERSITYGW_BIN) -harness $(HARNESS_DIR) $(BENCH_BUILDKIT)

bench-gc: build
	@$(HARNESS_DIR)/install-clients.sh docker-registry
	$(TIMED) bench-gc $(GO) run ./bench -berth $(BIN) -only gc

bench-proxy: build
	@$(HARNESS_DIR)/install-clients.sh docker-registry
	$(TIMED) bench-proxy $(GO) run ./bench -berth $(BIN) -only proxy

bench-ui: build
	$(TIMED) bench-ui $(GO) run ./bench -berth $(BIN) -only ui

# ZB_BASELINE=path/to/an/older/berth runs it in turns with this build.
bench-zb: build
	$(TIMED) bench-zb $(GO) run ./bench -berth $(BIN) -harness $(HARNESS_DIR) -only zb $(if $(ZB_BASELINE),-zb-baseline $(ZB_BASELINE))

# What the berth run, push and build cases compare with (crun and umoci are
# optional to the program, which says what it left out; installed here when
# apt has them). buildah is the build case's, with buildkitd (make buildkit).
BENCH_RUN_PACKAGES := runc crun umoci skopeo buildah
BENCH_BUILDKIT := -buildkitd $(BERTH_TOOLS)/buildkitd -buildctl $(BERTH_TOOLS)/buildctl
bench-run-tools:
	@missing=$$(for p in $(BENCH_RUN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

bench-run: build bench-run-tools
	$(TIMED) bench-run $(GO) run ./bench -berth $(BIN) -only run -harness $(HARNESS_DIR)

bench-push: build bench-run-tools
	$(TIMED) bench-push $(GO) run ./bench -berth $(BIN) -only push -harness $(HARNESS_DIR)

bench-build: build buildkit bench-run-tools
	$(TIMED) bench-build $(GO) run ./bench -berth $(BIN) -only build -harness $(HARNESS_DIR) $(BENCH_BUILDKIT)
