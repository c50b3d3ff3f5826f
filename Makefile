# guideline-ingest: one entry point for setting up, running and testing on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make test` runs two sessions: every test but the real node's on the default node (the
# node agent), then the real node's (marker node, `make test-node`) on a second local
# cluster with GUIDELINE_NODE=real, in its own runtime directory so neither inherits the
# other's objects.
PYTEST_MARKERS ?= not node
REAL_NODE_ENV := GUIDELINE_NODE=real GUIDELINE_LOCAL_DIR=$(CURDIR)/.local/real-node
# The one version of the project, defined in pyproject.toml: the image label (make image),
# the API, the CLI and the chart's appVersion (a test compares them) all read it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
export VERSION

.PHONY: help version deps system-deps venv build-k8s build-vegeta build-promtool image cluster \
        cluster-down helm-demo up down demo test \
        test-fast test-faults test-node lint format bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

version: ## Print the project's version (pyproject.toml)
	@echo $(VERSION)

system-deps: ## Install missing system packages (PostgreSQL, openssl, Go, buildah, runc) with apt
	@bash hack/install-system-deps.sh

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed ## Create .venv with the project and its dev dependencies

deps: system-deps venv build-k8s build-promtool ## Everything the stack and the tests need

build-k8s: ## Build (once, cached) kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm
	@bash hack/build-k8s.sh

build-node: ## Build (once, cached) the real node: kubelet, kube-proxy, containerd, CoreDNS, kube-router, the pause image
	@bash hack/build-k8s.sh node && bash hack/build-node.sh

build-vegeta: ## Build (once, cached) vegeta, the open-loop load generator of make bench
	@bash hack/build-vegeta.sh >/dev/null

image: system-deps ## Build the image (Dockerfile, no registry) and the PostgreSQL image (buildah; archives cached for a node)
	@bash hack/build-images.sh

build-promtool: ## Build (once, cached) promtool, which checks the chart's alert rules in the suite
	@bash hack/build-promtool.sh >/dev/null

cluster: system-deps venv ## Start the local control plane + node (GUIDELINE_NODE=agent|real); prints the kubeconfig path
	@bash hack/cluster.sh up

cluster-down: ## Stop the local cluster (either node), leaving no process, mount or rule behind
	@bash hack/cluster.sh down

helm-demo: system-deps venv ## The chart on the real node: image, helm install, port-forward :8080, a job
	@bash hack/helm-demo.sh

up: system-deps venv ## Start the whole stack: control plane, PostgreSQL, operator, API on :8000
	@bash hack/stack.sh up

down: ## Stop the whole stack
	@bash hack/stack.sh down

demo: up ## Start the stack, submit examples/hand-hygiene.md and a PDF, print summaries and checklists (with page numbers)
	@bash hack/stack.sh demo

test: deps build-node image ## The whole suite: node-agent session, then the real node's; starts and stops its own clusters and PostgreSQL
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	status=0; $(BIN)/pytest -m "$(PYTEST_MARKERS)" $(PYTEST_ARGS) || status=$$?; \
	  $(REAL_NODE_ENV) $(BIN)/pytest -m node $(PYTEST_ARGS) || status=$$?; exit $$status

test-node: deps build-node image ## Only the real node's tests (GUIDELINE_NODE=real: kubelet, containerd, the chart in containers)
	$(REAL_NODE_ENV) $(BIN)/pytest -m node $(PYTEST_ARGS)

test-fast: venv ## Only the tests that need no cluster and build no image
	$(BIN)/pytest -m "not cluster and not image" $(PYTEST_ARGS)

test-faults: deps build-node image ## Only the fault-injection tests (on the real node)
	$(REAL_NODE_ENV) $(BIN)/pytest -m fault $(PYTEST_ARGS)

lint: venv ## ruff + the import-layering contract + mypy (strict on core/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: venv ## Apply ruff's formatting and fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: deps build-vegeta ## Benchmarks: prints figures, writes bench-results/*.json and a plot
	$(BIN)/python -m bench $(BENCH_ARGS)

clean: down ## Stop everything and remove .local/ (the build cache outside the repo stays)
	rm -rf .local
