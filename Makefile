# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
S3RVER := tests/s3rver/node_modules/.installed

.PHONY: demo test lint pytest install compile clean

demo: $(VENV)/.installed
	$(PYTHON) pipeline.py run --demo

test: lint pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pytest: $(VENV)/.installed $(S3RVER)
	$(VENV)/bin/pytest

compile: $(VENV)/.installed
	$(PYTHON) pipeline.py compile -o cxrtl.yaml

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

# The S3 server the store tests run against (npm's @20minutes/s3rver, pinned by the lockfile).
$(S3RVER): tests/s3rver/package.json tests/s3rver/package-lock.json
	npm ci --prefix tests/s3rver --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) tests/s3rver/node_modules .pytest_cache .ruff_cache cxrtl.yaml

# --- Container images (docker/) -------------------------------------------------------------------
# Names and tags come from the one place they are configured, the images: block of
# manifests/base/kustomization.yaml, through components/images.py (which pipeline.py uses too).
# `make images` builds both images, `make push` pushes them. `make push REGISTRY=ghcr.io/you [TAG=x]`
# first points that block at REGISTRY (with `kustomize edit set image`; commit the change, then compile
# or submit the pipeline again so that its tasks use the pushed images).
# Recursive (=): read when a recipe runs, so after set-images has changed the kustomization.
TRAIN_IMAGE = $(shell $(PYTHON) -m components.images cxrtl-train)
CPU_IMAGE = $(shell $(PYTHON) -m components.images cxrtl-cpu)
# A registry may carry a port (host:5000/x:tag): the tag is what follows the last colon.
TAG ?= $(lastword $(subst :, ,$(TRAIN_IMAGE)))

.PHONY: images push set-images docker-engine

docker-engine:
	@command -v docker >/dev/null 2>&1 || { echo "make: docker is not installed here: images can only be built where a Docker engine runs" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: no Docker engine available here (docker info failed): images can only be built where a Docker engine runs" >&2; exit 1; }

images: docker-engine
	@test -n "$(TRAIN_IMAGE)" && test -n "$(CPU_IMAGE)" || { echo "make: cannot read the image names (see the error above)" >&2; exit 1; }
	docker build -f docker/Dockerfile.train -t $(TRAIN_IMAGE) .
	docker build -f docker/Dockerfile.cpu -t $(CPU_IMAGE) .

push: $(if $(REGISTRY),set-images) images
	docker push $(TRAIN_IMAGE)
	docker push $(CPU_IMAGE)

set-images:
	@test -n "$(REGISTRY)" || { echo "make: set REGISTRY=HOST/NAMESPACE (and TAG=... to change the tag)" >&2; exit 2; }
	@command -v kustomize >/dev/null 2>&1 || { echo "make: kustomize is not installed: edit the images: block of manifests/base/kustomization.yaml by hand" >&2; exit 1; }
	cd manifests/base && kustomize edit set image cxrtl-train=$(REGISTRY)/cxrtl-train:$(TAG) cxrtl-cpu=$(REGISTRY)/cxrtl-cpu:$(TAG)
