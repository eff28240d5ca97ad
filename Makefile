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

## lambda-build: the Lambda functions as target/lambda/<bin>/bootstrap.zip (cargo-lambda and zig from PyPI, installed if missing).
## LAMBDA_ARCH=arm64 cross-compiles for Graviton (needs the aarch64-unknown-linux-gnu rust target).
LAMBDA_BINS ?= aether-query-lambda aether-store-lambda aether-compact-lambda aether-rule-lambda
LAMBDA_ARCH ?= x86-64
.PHONY: lambda-tools lambda-build lambda-invoke
lambda-tools:
	@command -v cargo-lambda >/dev/null 2>&1 || { echo "installing cargo-lambda (PyPI, with ziglang)" >&2; python3 -m pip install -q --disable-pip-version-check cargo-lambda && (command -v pyenv >/dev/null 2>&1 && pyenv rehash || true); }

lambda-build: lambda-tools
	$(CARGO) lambda build --profile lambda-release --$(LAMBDA_ARCH) --output-format zip $(addprefix --bin ,$(LAMBDA_BINS))
	@ls -l $(addprefix target/lambda/,$(addsuffix /bootstrap.zip,$(LAMBDA_BINS)))

## lambda-invoke: runs the functions under `cargo lambda watch` against the local bucket of `make run`
## ($(RUN_DIR)/bucket, or $$OBJSTORE_CONFIG) and invokes each with the example events in functions/*/events/.
lambda-invoke: lambda-tools
	@tests/scripts/lambda-invoke.sh "$(RUN_DIR)"
