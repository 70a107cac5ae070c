# The two commands of the README: `make demo` and `make test`. Everything else is what they use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
export HEURIMENTOR_CACHE ?= $(HOME)/.cache/heurimentor
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
MAKE_START := $(shell date +%s)

.PHONY: help venv system-deps corpora tools images test demo cluster-up cluster-down bench

help:
	@echo "make demo         set up and run the main job on this machine (embedded defaults)"
	@echo "make test         set up and run the whole test suite against real servers"
	@echo "make images       build the five images with buildah (offline), OCI archives in \$$HEURIMENTOR_CACHE/images"
	@echo "make cluster-up   start a local control plane (etcd, apiserver, controller-manager, scheduler, KWOK)"
	@echo "make cluster-up REAL_NODE=1   the same with a real node (kubelet, containerd, runc) and the images of make images"
	@echo "make cluster-down stop it"

$(VENV)/.installed: pyproject.toml hack/install-python.sh hack/constraints.txt dmu_service/pipeline/_kernels.c
	hack/timed.sh "python environment" hack/install-python.sh $(PYTHON) $(VENV)

venv: $(VENV)/.installed

system-deps:
	hack/timed.sh "system packages (postgresql, prometheus)" hack/install-system-deps.sh

# The demo's real text (Debian packages), without the test servers' packages.
corpora:
	hack/install-system-deps.sh corpora

tools:
	hack/timed.sh "control-plane binaries (Go module proxy)" hack/build-tools.sh

# The images (hack/build-images.sh): cached by content hash, so a warm run takes seconds; a change
# to the sources rebuilds them (the trainer's torch layer dominates, see README "Measured").
images: system-deps venv
	hack/timed.sh "images (buildah)" hack/build-images.sh

# Phases in order (each prints its time), then the total. PYTEST_ARGS narrows the run, e.g.
# `make test PYTEST_ARGS=tests/foundation`.
test: system-deps venv tools images
	@status=0; hack/timed.sh "test suite" hack/run-tests.sh $(VENV)/bin/python $(PYTEST_ARGS) || status=$$?; \
	echo "==> make test: $$(( $$(date +%s) - $(MAKE_START) ))s in all (exit $$status)" >&2; exit $$status

# DEMO_ARGS passes options, e.g. `make demo DEMO_ARGS="--steps 120"` (`heurimentor demo --help`).
demo: corpora venv
	hack/timed.sh "demo" $(VENV)/bin/heurimentor demo $(DEMO_ARGS)

# stdout is only the `export` lines, so `eval "$$(make -s cluster-up)"` works; progress goes to stderr.
# REAL_NODE=1: a real node instead of KWOK (hack/testenv/realnode.py), in namespaces of its own.
cluster-up: venv tools $(if $(filter 1,$(REAL_NODE)),images)
	@$(VENV)/bin/python -m hack.testenv cluster-up

cluster-down:
	@$(VENV)/bin/python -m hack.testenv cluster-down
