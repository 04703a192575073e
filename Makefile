# kedge developer entry points. CI runs `scripts/setup.sh && make test`
# (.ci/run); README.md says the same.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# rustup's toolchain lives in ~/.cargo/bin; find it from non-login shells too.
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif

CARGO ?= cargo
VENV ?= .venv
# The binary `make run` and `make conformance` use.
KEDGE_BIN ?= $(CURDIR)/target/release/kedge
# Extra arguments: `make run ARGS='--https-listen-port 7443'`,
# `make conformance PYTEST_ARGS='-k python -x'`.
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup build run lint unit conformance test

## setup: install system packages, the conformance venv, build and install kedge
setup:
	scripts/setup.sh

## build: the release binary, target/release/kedge
build:
	$(CARGO) build --release -p kedge

## run: `kedge server` in the foreground (needs root for its default paths)
run: build
	$(KEDGE_BIN) server $(ARGS)

## lint: rustfmt and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: unit and integration tests of every crate
unit:
	$(CARGO) test --workspace

## conformance: kubectl 1.27/1.33 and the Python client against a fresh kedge server
conformance: build
	@test -x $(VENV)/bin/pytest || { echo "no $(VENV)/bin/pytest: run 'make setup' first" >&2; exit 1; }
	KEDGE_BIN=$(KEDGE_BIN) $(VENV)/bin/pytest -q conformance/ $(PYTEST_ARGS)

## test: lint, then unit+integration tests, then conformance
test:
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) conformance

## bench: build, then measure a real kedge server (docs/benchmarks.md); `make bench BENCH_ARGS=--quick` for a ~1 minute smoke run
BENCH_ARGS ?=
.PHONY: bench
bench:
	$(CARGO) build --release -p kedge -p kedge-bench
	target/release/kedge-bench --kedge target/release/kedge $(BENCH_ARGS)

## qemu-test: the QEMU test matrix (scripts/qemu-matrix, docs/qemu-matrix.md): kedge from its .deb and install.sh on Debian 12 guests with 1 GiB, cgroup v2 and v1 (~20 min under TCG, not part of `make test`); `make qemu-test QEMU_ARGS='--only v2 --keep'`
QEMU_ARGS ?=
.PHONY: qemu-test
qemu-test: build deb
	scripts/qemu-matrix $(QEMU_ARGS)

## deb: the Debian package target/debian/kedge_<version>_<arch>.deb from the release binary (scripts/build-deb; docs/install.md)
.PHONY: deb
deb: build
	scripts/build-deb --binary target/release/kedge --out target/debian
