# The one test command is `make test`; `make demo` is the local demo (no cloud, no cluster).
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv

.PHONY: simulate-examples test deps fmt-check lint build-lint crd-check chart-check unit demo crds bench clean-venv real-cluster

# `make test` lints while it builds (decision 088): clippy-driver is the compiler for our own
# crates, with the same arguments `cargo clippy -- -D warnings` gives it, so the one build of every
# target is also the lint, and dependencies are compiled once instead of once for `cargo check`
# and again for the tests. Every cargo command of `make test` sees the same two variables, so
# later steps reuse that build.
CLIPPY_DRIVER := $(shell rustc --print sysroot 2>/dev/null)/bin/clippy-driver
test: export RUSTC_WORKSPACE_WRAPPER := $(CLIPPY_DRIVER)
test: export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

## test: everything CI runs — install test dependencies (while the build runs), format, lint and
## build every target, CRD checks, chart checks, all tests
test: fmt-check build-lint crd-check chart-check unit

## deps: install the test dependencies (Python venv with moto, kubectl, kubernetes-validate, helm SDK; promtool)
deps:
	./scripts/test-deps.sh

fmt-check:
	$(CARGO) fmt --all --check

## lint: clippy on every target (what `make test` does during its build)
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## build-lint: installs the test dependencies in the background while every target of the
## workspace is built with clippy as the compiler wrapper (a lint failure fails the build);
## the dependency log is shown when the installation fails
build-lint:
	@test -x "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found at $(CLIPPY_DRIVER)"; exit 1; }
	@mkdir -p target; ./scripts/test-deps.sh > target/test-deps.log 2>&1 & deps=$$!; \
	  $(CARGO) test --workspace --all-targets --no-run; build=$$?; \
	  wait $$deps; dep=$$?; cat target/test-deps.log; \
	  if [ $$dep -ne 0 ]; then echo "test dependencies failed (exit $$dep)"; exit $$dep; fi; \
	  exit $$build

## crd-check: committed CRDs equal the generated ones and validate as Kubernetes 1.37 manifests
crd-check:
	$(CARGO) test -q --test controller crds::
	$(VENV)/bin/kubernetes-validate --strict --quiet crds/*.yaml

## chart-check: Helm chart lint + render (default and all features), kubernetes-validate --strict,
## promtool check/test rules for the alerts, values schema refusals (scripts/helm.py, no helm binary)
chart-check:
	$(VENV)/bin/python scripts/helm.py check

# Most tests wait on servers (the emulator, moto, Prometheus), not on the CPU: eight at a time keep
# two cores busy (the controller suite: 94 s on 2 threads, 30 s on 8, also with both cores loaded;
# decision 088). Set RUST_TEST_THREADS to override.
RUST_TEST_THREADS ?= 8
unit:
	RUST_TEST_THREADS=$(RUST_TEST_THREADS) $(CARGO) test --workspace

## crds: regenerate crds/ from src/controller/crd/ (and the chart's copy, which tests/chart.rs compares)
crds:
	$(CARGO) run -q -- crd --dir crds
	cp crds/*.yaml charts/autoguardrails/crds/

## demo: the emulator, the real controller binary (in-memory AWS), a signal on /events, and a
## Quarantine walked through approve -> Active -> release (examples/demo.rs; no cloud, no cluster);
## then the deployment gate on the bundled seed data (examples/gate/demo.sh)
demo:
	$(CARGO) build -q --bin autoguardrails --example demo
	./target/debug/examples/demo
	./examples/gate/demo.sh

## simulate-examples: evaluate every example policy against its signals (decisions, IAM documents)
simulate-examples:
	./scripts/simulate-examples.sh

## real-cluster: the end-to-end scenario against the cluster in $$KUBECONFIG (skipped without it)
real-cluster:
	./tests/real-cluster.sh

## bench: benchmarks that print figures (docs/benchmarks.md): criterion micro-benchmarks with short
## measurement times, the end-to-end program (the scale phase in a process of its own, so its RSS
## figures start from a fresh heap; it runs the emulator binary in a child process), the same
## scale on the real `autoguardrails controller` binary, the SNS load and velocity benchmarks; about 10 minutes on an idle 2-core machine, builds excluded
bench:
	$(CARGO) build --release -q -p kube-emulator --bin kube-emulator
	$(CARGO) build --release -q -p autoguardrails --bin autoguardrails --features jemalloc
	$(CARGO) bench --features jemalloc --bench evaluate --bench sns --bench document -- --warm-up-time 1 --measurement-time 3
	AGR_BENCH_PHASES=latency,drift,cost $(CARGO) bench --features jemalloc --bench e2e
	AGR_BENCH_PHASES=scale $(CARGO) bench --features jemalloc --bench e2e
	AGR_BENCH_PHASES=binary $(CARGO) bench --features jemalloc --bench e2e
	$(CARGO) bench --features jemalloc --bench sns_load
	$(CARGO) bench --features jemalloc --bench velocity
	$(CARGO) bench --features jemalloc --bench dashboard
	$(CARGO) bench --features jemalloc --bench drift
	$(CARGO) bench --features jemalloc --bench selectors
	$(CARGO) bench --features jemalloc --bench audit
	$(CARGO) bench --features jemalloc --bench gate
	./scripts/bench-deps.sh
	$(CARGO) bench --features jemalloc --bench analyze
