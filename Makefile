# The one test command is `make test`; `make demo` is the local demo (no cloud, no cluster).
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv

.PHONY: test deps fmt-check lint crd-check unit demo crds bench clean-venv

## test: everything CI runs — install test dependencies, format, lint, CRD checks, all tests
test: deps fmt-check lint crd-check unit

## deps: install the test dependencies (Python venv with moto, kubectl, kubernetes-validate, helm SDK; promtool)
deps:
	./scripts/test-deps.sh

fmt-check:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crd-check: committed CRDs equal the generated ones and validate as Kubernetes 1.37 manifests
crd-check:
	$(CARGO) test -q --test crds
	$(VENV)/bin/kubernetes-validate --strict --quiet crds/*.yaml

unit:
	$(CARGO) test --workspace

## crds: regenerate crds/ from src/crd/
crds:
	$(CARGO) run -q -- crd --dir crds

## demo: evaluate every example policy against its signals and show the decisions and IAM documents
demo:
	./scripts/demo.sh

## bench: benchmarks that print figures
bench:
	$(CARGO) bench --workspace
