# The one test command is `make test`; `make demo` is the local demo (no cloud, no cluster).
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv

.PHONY: simulate-examples test deps fmt-check lint crd-check chart-check unit demo crds bench clean-venv real-cluster

## test: everything CI runs — install test dependencies, format, lint, CRD checks, all tests
test: deps fmt-check lint crd-check chart-check unit

## deps: install the test dependencies (Python venv with moto, kubectl, kubernetes-validate, helm SDK; promtool)
deps:
	./scripts/test-deps.sh

fmt-check:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crd-check: committed CRDs equal the generated ones and validate as Kubernetes 1.37 manifests
crd-check:
	$(CARGO) test -q --test controller crds::
	$(VENV)/bin/kubernetes-validate --strict --quiet crds/*.yaml

## chart-check: Helm chart lint + render (default and all features), kubernetes-validate --strict,
## promtool check/test rules for the alerts, values schema refusals (scripts/helm.py, no helm binary)
chart-check:
	$(VENV)/bin/python scripts/helm.py check

unit:
	$(CARGO) test --workspace

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
## figures start from a fresh heap; it runs the emulator binary in a child process) and the SNS
## load benchmark; about 10 minutes on an idle 2-core machine, builds excluded
bench:
	$(CARGO) build --release -q -p kube-emulator --bin kube-emulator
	$(CARGO) bench --bench evaluate --bench sns --bench document -- --warm-up-time 1 --measurement-time 3
	AGR_BENCH_PHASES=latency,drift,cost $(CARGO) bench --bench e2e
	AGR_BENCH_PHASES=scale $(CARGO) bench --bench e2e
	$(CARGO) bench --bench sns_load
	$(CARGO) bench --bench gate
	./scripts/bench-deps.sh
	$(CARGO) bench --bench analyze
