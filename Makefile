# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
S3RVER := tests/s3rver/node_modules/.installed

.PHONY: demo test test-fast lint pytest pytest-fast install compile clean test-packages

demo: $(VENV)/.installed
	$(PYTHON) pipeline.py run --demo

test: lint pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pytest: $(VENV)/.installed $(S3RVER) test-packages
	$(VENV)/bin/pytest

# The inner loop's tier (under 3 minutes on two cores): every test but the container tests and those marked
# slow (pyproject.toml: a test that takes seconds or more is marked). `make test` runs them all.
test-fast: lint pytest-fast

pytest-fast: $(VENV)/.installed $(S3RVER) test-packages
	$(VENV)/bin/pytest -m "not slow and not containers"

# Debian packages the tests run for real: chromium (the report's browser test, tests/test_report_browser.py) and
# docker-registry (the registry submit asks whether images were pushed, tests/oci_registry.py). Installed as
# root with apt, as on CI; elsewhere one line names what is missing (the browser test is then skipped, the
# registry's tests fail).
TEST_PACKAGES := chromium docker-registry
test-packages:
	@missing=""; for p in $(TEST_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get install -y -qq $$missing || { apt-get update -qq && apt-get install -y -qq $$missing; }; } >/dev/null; \
	else echo "make: not installed, and this is not root with apt:$$missing"; fi

compile: $(VENV)/.installed
	$(PYTHON) pipeline.py compile -o cxrtl.yaml

install: $(VENV)/.installed

# pip -qq: errors only; the install's warnings (about a machine's index settings, say) would bury what follows.
$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install -qq --upgrade pip
	$(PYTHON) -m pip install -qq -e '.[test]'
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
# `make images` builds both images from docker/Dockerfile under the names that block gives. `make push
# [REGISTRY=ghcr.io/you]` first points the block at REGISTRY (default: the registry it names now) with the
# checkout's content tag (components/images.py: VERSION-HASH of everything an image is built from, so every
# change gets a new tag and a node never runs old code under a reused one), then builds and pushes; commit
# the block, then compile or submit the pipeline again (submit warns when the block's tag is not this code's).
# `make images-offline` needs no registry (README: "Build the images"); `make test-containers` builds
# that way and runs the whole pipeline in the images.
# Recursive (=): read when a recipe runs, so after set-images has changed the kustomization.
TRAIN_IMAGE = $(shell $(PYTHON) -m components.images cxrtl-train)
CPU_IMAGE = $(shell $(PYTHON) -m components.images cxrtl-cpu)
# Extra `docker build` arguments for both images (the offline build sets BASE_IMAGE and WHEELHOUSE).
BUILD_ARGS ?=
TAG ?= $(shell $(PYTHON) -m components.images --content-tag $(BUILD_ARGS))
# What precedes the image's own name (its last path component) in the block now.
REGISTRY ?= $(patsubst %/,%,$(dir $(TRAIN_IMAGE)))
# The torch build of the CPU image (images-offline says when it is cuda).
CPU_TORCH ?= cpu
WHEELHOUSE := build/wheelhouse
OFFLINE_BASE ?= cxrtl-base:bookworm-python3.11

.PHONY: images push set-images docker-engine image-names image-sizes wheelhouse images-offline offline-images \
	test-containers pytest-containers

docker-engine:
	@command -v docker >/dev/null 2>&1 || { echo "make: docker is not installed here: images can only be built where a Docker engine runs (make images-offline starts one, as root)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: no Docker engine answers here (docker info failed): start one, or use make images-offline, which starts one as root" >&2; exit 1; }

image-names: $(VENV)/.installed
	@test -n "$(TRAIN_IMAGE)" && test -n "$(CPU_IMAGE)" || { echo "make: cannot read the image names (see the error above)" >&2; exit 1; }

images: docker-engine image-names
	docker build -f docker/Dockerfile --build-arg TORCH=cuda $(BUILD_ARGS) --build-arg IMAGE=$(TRAIN_IMAGE) -t $(TRAIN_IMAGE) .
	docker build -f docker/Dockerfile --build-arg TORCH=$(CPU_TORCH) $(BUILD_ARGS) --build-arg IMAGE=$(CPU_IMAGE) -t $(CPU_IMAGE) .
	@$(MAKE) --no-print-directory image-sizes

# Each name with its size (the two names can tag one image: the offline build makes them identical).
image-sizes: image-names
	@for ref in $(TRAIN_IMAGE) $(CPU_IMAGE); do \
		echo "$$ref $$(docker image inspect --format '{{.Size}}' $$ref | numfmt --to=iec --suffix=B)"; \
	done | column -t

push: set-images images
	docker push $(TRAIN_IMAGE)
	docker push $(CPU_IMAGE)

set-images:
	@test -n "$(REGISTRY)" && test -n "$(TAG)" || { echo "make: set REGISTRY=HOST/NAMESPACE (and TAG=..., where this is no git checkout)" >&2; exit 2; }
	@command -v kustomize >/dev/null 2>&1 || { echo "make: kustomize is not installed: edit the images: block of manifests/base/kustomization.yaml by hand" >&2; exit 1; }
	cd manifests/base && kustomize edit set image cxrtl-train=$(REGISTRY)/cxrtl-train:$(TAG) cxrtl-cpu=$(REGISTRY)/cxrtl-cpu:$(TAG)
	cd manifests/serving && kustomize edit set image cxrtl-cpu=$(REGISTRY)/cxrtl-cpu:$(TAG)

# Every wheel the images install, built or downloaded by this machine's pip (Linux x86_64, Python 3.11,
# like the images) from the indexes pip is configured with; copy build/wheelhouse to an air-gapped machine.
wheelhouse: $(WHEELHOUSE)/.complete

$(WHEELHOUSE)/.complete: pyproject.toml docker/pyproject_requirements.py $(VENV)/.installed
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PYTHON) docker/pyproject_requirements.py pipeline serve < pyproject.toml > build/requirements.txt
	$(PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) -r build/requirements.txt
	touch $@

# No registry needed: a base image from Debian packages (docker/base-image.sh, as root) and every Python
# package from the wheelhouse; starts a Docker engine if none answers, and stops only the one it started.
# PyPI serves torch for Linux only as its CUDA build, so the wheelhouse holds that one and the CPU image
# carries it too (it runs on CPUs; it is the size of the training image). For the small CPU image, build
# online (make images), or put the CPU wheels in the wheelhouse and set OFFLINE_CPU_TORCH=cpu.
OFFLINE_CPU_TORCH ?= cuda
images-offline: wheelhouse
	docker/with-engine.sh $(MAKE) --no-print-directory offline-images

offline-images:
	docker/base-image.sh $(OFFLINE_BASE)
	$(MAKE) --no-print-directory images CPU_TORCH=$(OFFLINE_CPU_TORCH) \
		BUILD_ARGS="--build-arg BASE_IMAGE=$(OFFLINE_BASE) --build-arg WHEELHOUSE=$(WHEELHOUSE) $(BUILD_ARGS)"

# The images built offline, then the demo pipeline run in them (tests/test_containers.py), then their sizes.
test-containers: wheelhouse $(S3RVER)
	docker/with-engine.sh $(MAKE) --no-print-directory offline-images pytest-containers

pytest-containers: $(VENV)/.installed
	$(VENV)/bin/pytest -m containers -v
	@$(MAKE) --no-print-directory image-sizes
