# Berth: build, test and benchmark.
#
#   make build   static binary bin/berth (CGO_ENABLED=0, -trimpath, version stamped)
#   make test    everything: prerequisites, go vet, unit tests with -race, and the
#                integration suite (conformance, real clients, test images, layout
#                compatibility with docker-registry); prints timings; what `.ci/run` does
#   make bench   berth next to Debian's docker-registry: blob push/pull, manifest GETs
#   make lint    gofmt -l and go vet
#
# The registry test harness (shared, read-only) lives in $(HARNESS).
HARNESS ?= ../shared/harness
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
BIN ?= bin/berth
UNIT_TIMEOUT ?= 5m
INTEGRATION_TIMEOUT ?= 30m

export PATH := $(PATH):/usr/local/go/bin
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

HARNESS_DIR := $(abspath $(HARNESS))
TIMED := scripts/timed.sh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: build test prereqs vet unit integration bench lint wrk help
.DEFAULT_GOAL := help

help:
	@sed -n '3,9p' Makefile | sed 's/^# \{0,1\}//'

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

# Clients, the conformance suite and docker-registry; a no-op when present.
prereqs:
	@[ -x "$(HARNESS_DIR)/install-clients.sh" ] || { echo "harness not found in $(HARNESS_DIR) (set HARNESS=DIR)"; exit 1; }
	$(HARNESS_DIR)/install-clients.sh all docker-registry

vet:
	$(GO) vet ./...

# Unit and driver tests; the integration tests skip here (no BERTH_INTEGRATION).
# A bounded timeout: one hung test must not eat the whole budget.
unit:
	env -u BERTH_INTEGRATION $(GO) test -race -timeout $(UNIT_TIMEOUT) ./...

integration:
	BERTH_INTEGRATION=1 BERTH_HARNESS=$(HARNESS_DIR) $(GO) test ./integration/ -v -count=1 -timeout $(INTEGRATION_TIMEOUT)

lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

wrk:
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

bench: build wrk
	@$(HARNESS_DIR)/install-clients.sh docker-registry
	$(TIMED) bench $(GO) run ./bench -berth $(BIN)
