# Aether: `make run` brings up what exists so far on a local bucket; `make test` runs
# every test against the real Prometheus, promtool and S3 server (installed if missing).
SHELL := /bin/bash
CARGO ?= cargo
RUN_DIR ?= .aether
export CARGO_TERM_COLOR ?= never

.PHONY: all build release deps run test lint fmt bench fuzz clean

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p aether

deps:
	@tests/scripts/install-deps.sh

## run: build, backfill a week of demo history into a local bucket, start the whole stack (UI on :10902).
run: deps release
	@tests/scripts/run-local.sh "$(RUN_DIR)"

## test: formatting, lints, and the whole test suite with real Prometheus and S3.
test: deps lint deploy-check
	$(CARGO) test --workspace --all-targets --no-fail-fast

## deploy-check: offline validation of k8s/ and infra/ (yamllint, kubernetes-validate, promtool, python-hcl2, terraform, checkov).
.PHONY: deploy-check
deploy-check: deps
	@tests/scripts/validate-deploy.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: throughput figures, side by side with the reference (see docs/benchmarks.md).
bench: deps
	$(CARGO) run --release -p bench -- all

## fuzz: run each cargo-fuzz target for FUZZ_SECONDS (installs cargo-fuzz if missing).
FUZZ_SECONDS ?= 60
fuzz:
	@tests/scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean
	rm -rf $(RUN_DIR)

## conformance: Prometheus's PromQL test scripts against the engine (shared/promql).
.PHONY: conformance
conformance:
	$(CARGO) run --release -q -p promql --bin promqltest
