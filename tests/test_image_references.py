"""Every container image the project names can be pulled as written, and always the same one: an explicit
registry host (no implicit Docker Hub, which stopped serving some images, MinIO's among them) and a pinned
tag, never `latest`. Images we do not build carry a digest as well.

Where images are named: the rendered overlays (what `kubectl apply -k` creates), the `images:` block the
pipeline's tasks take theirs from (components/images.py), and the Dockerfiles' FROM lines, with the
defaults of `ARG`s they use (`ARG BASE_IMAGE=...` / `FROM ${BASE_IMAGE}`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_manifests import OVERLAYS, documents, pod_specs, render

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def reference_problem(reference: str) -> str | None:
    """Why ``reference`` is not an explicitly hosted, pinned image reference; None if it is one."""
    name, at, digest = reference.partition("@")
    if at and not DIGEST.fullmatch(digest):
        return f"digest {digest!r} is not sha256:<64 hex>"
    # The tag follows the last colon after the last slash (a registry host may carry a port).
    repository, colon, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    first, slash, _ = repository.partition("/")
    # Docker's own rule: the first component is a registry host if it has a dot or a port, or is localhost.
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return "no registry host (it would be pulled from Docker Hub implicitly)"
    if not colon or not tag:
        return "no tag"
    if tag == "latest":
        return "the tag 'latest' is not a pin"
    return None


def _instructions(path: Path) -> list[list[str]]:
    """The Dockerfile's instructions as word lists, continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        if (current + line).strip():
            instructions.append((current + line).split())
        current = ""
    return instructions


def dockerfile_images(path: Path) -> list[str]:
    """The images of the FROM lines, with global ARG defaults substituted; earlier stages' names skipped."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for keyword, *operands in _instructions(path):
        if keyword.upper() == "ARG" and not stages and not images:
            for word in operands:
                key, _, value = word.partition("=")
                args[key] = value.strip("\"'")
        elif keyword.upper() == "FROM":
            operands = [w for w in operands if not w.startswith("--")]
            image = _VARIABLE.sub(lambda m: args.get(m.group(1) or m.group(2), m.group(0)), operands[0])
            if image not in stages:
                images.append(image)
            if len(operands) >= 3 and operands[1].upper() == "AS":
                stages.add(operands[2])
    return images


def rendered_images(overlay: Path) -> list[tuple[str, str]]:
    return [
        (where, container["image"])
        for where, _, spec in pod_specs(documents(render(overlay)))
        for container in spec.get("initContainers", []) + spec["containers"]
    ]


@pytest.mark.parametrize(
    "reference",
    [
        "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:" + "a" * 64,
        "ghcr.io/cxrtl/cxrtl-cpu:0.1.0",
        "localhost:5000/cxrtl-train:dev",
        "registry.example.com:5000/team/image:1.2",
        "docker.io/library/python:3.11.14-slim-bookworm@sha256:" + "0" * 64,
    ],
)
def test_the_check_accepts_explicit_pinned_references(reference: str):
    assert reference_problem(reference) is None


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("minio/minio:RELEASE.2025-09-07T16-13-09Z", "no registry host"),
        ("python:3.11.14-slim-bookworm", "no registry host"),
        ("quay.io/minio/mc", "no tag"),
        ("quay.io/minio/mc:latest", "'latest'"),
        ("localhost:5000/cxrtl-train", "no tag"),
        ("quay.io/minio/mc@sha256:" + "a" * 64, "no tag"),
        ("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z@sha256:abc", "digest"),
    ],
)
def test_the_check_refuses_implicit_or_unpinned_references(reference: str, problem: str):
    assert problem in (reference_problem(reference) or "")


def test_dockerfile_images_resolve_arg_defaults_and_skip_stage_names(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        'ARG BASE_IMAGE="docker.io/library/python:3.11.14-slim-bookworm"\n'
        "# FROM commented:out\n"
        "FROM --platform=linux/amd64 ${BASE_IMAGE} AS build\n"
        "RUN true\n"
        "FROM \\\n    build\n"
        "FROM $BASE_IMAGE\n"
    )
    assert dockerfile_images(dockerfile) == ["docker.io/library/python:3.11.14-slim-bookworm"] * 2


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_image_the_manifests_run_is_hosted_and_pinned(overlay: Path):
    images = rendered_images(overlay)
    assert images
    for where, image in images:
        assert reference_problem(image) is None, f"{overlay.name} {where}: {image}: {reference_problem(image)}"


def test_images_we_do_not_build_are_pinned_by_digest_too(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import images

    ours = set(images().values())
    third_party = {image for overlay in OVERLAYS for _, image in rendered_images(overlay)} - ours
    assert {image.split("@")[0].rsplit(":", 1)[0] for image in third_party} >= {
        "quay.io/minio/minio",
        "quay.io/minio/mc",
    }
    for image in third_party:
        assert "@" in image, f"{image}: a third-party image needs its digest"


def test_the_pipeline_images_are_hosted_and_pinned(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import images

    for name, image in images().items():
        assert reference_problem(image) is None, f"{name}: {image}: {reference_problem(image)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_every_dockerfile_base_image_is_hosted_and_pinned(dockerfile: Path):
    bases = dockerfile_images(dockerfile)
    assert bases, f"{dockerfile.name}: no FROM"
    for base in bases:
        assert "$" not in base, f"{dockerfile.name}: FROM {base}: an ARG without a default"
        assert reference_problem(base) is None, f"{dockerfile.name}: FROM {base}: {reference_problem(base)}"


def _image_inputs_copy(root: Path) -> Path:
    """A git checkout holding the files the content tag reads, and a file it must not."""
    import shutil
    import subprocess

    for name in (".dockerignore", ".gitignore", "docker/Dockerfile", "pyproject.toml", "README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    (root / "cxrtl").mkdir()
    (root / "cxrtl" / "train.py").write_text("EPOCHS = 10\n")
    (root / "manifests").mkdir()
    (root / "manifests" / "kustomization.yaml").write_text("images: []\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def test_the_content_tag_changes_with_what_the_image_is_built_from_and_only_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import content_tag

    root = _image_inputs_copy(tmp_path)
    first = content_tag(root=root)
    assert re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{12}", first) and content_tag(root=root) == first
    # Not in the image: the kustomization make push edits, and a cache the build context leaves out.
    (root / "manifests" / "kustomization.yaml").write_text("images: [{name: cxrtl-cpu, newTag: x}]\n")
    (root / "cxrtl" / "__pycache__").mkdir()
    (root / "cxrtl" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    assert content_tag(root=root) == first
    cuda126 = content_tag("--build-arg TORCH_CUDA=cu126", root=root)
    assert cuda126.startswith(f"{first}-") and cuda126 != first
    (root / "cxrtl" / "train.py").write_text("EPOCHS = 11\n")
    edited = content_tag(root=root)
    (root / "cxrtl" / "new.py").write_text("")  # not yet added to git, but in the build context
    added = content_tag(root=root)
    assert len({first, edited, added}) == 3


def test_submit_is_warned_of_images_that_are_not_this_code(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import components.images as module

    tag = module.content_tag()
    monkeypatch.setattr(module, "images", lambda: {"cxrtl-train": "r.io/t:0.1.0", "cxrtl-cpu": "r.io/c@sha256:0"})
    assert "kustomization.yaml" in (module.stale_warning() or "") and tag in (module.stale_warning() or "")
    monkeypatch.setattr(module, "images", lambda: {"cxrtl-train": f"r.io/t:{tag}", "cxrtl-cpu": "r.io/c@sha256:0"})
    assert module.stale_warning() is None


def test_the_checked_in_images_are_this_checkouts_content_tag(monkeypatch: pytest.MonkeyPatch):
    """So that a pipeline compiled from any commit names images of that commit's code, under a tag no other
    content gets. A change to what the images are built from fails here until `make set-images` (or an edit
    of both kustomizations' newTag) gives them the new tag."""
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import content_tag, images

    tag = content_tag()
    named = {name: ref.rpartition(":")[2] for name, ref in images().items()}
    assert named == dict.fromkeys(named, tag), (
        f"manifests/base/kustomization.yaml names tags {sorted(set(named.values()))}, but this checkout's content "
        f"tag is {tag}: run make set-images (it sets manifests/serving's too)"
    )


def test_the_compiled_pipelines_name_every_image_by_its_content_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import yaml

    monkeypatch.syspath_prepend(str(ROOT))
    from kfp import compiler

    from components.images import content_tag
    from components.placement import ClusterOptions
    from pipeline import build_pipeline
    from predict_pipeline import build_predict_pipeline

    for build in (build_pipeline, build_predict_pipeline):
        out = tmp_path / f"{build.__name__}.yaml"
        compiler.Compiler().compile(build(ClusterOptions()), str(out))
        spec = next(yaml.safe_load_all(out.read_text()))
        refs = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        assert refs and all(ref.endswith(f":{content_tag()}") for ref in refs), refs


def test_make_push_points_the_images_at_the_content_tag(monkeypatch: pytest.MonkeyPatch):
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import content_tag

    dry = subprocess.run(
        ["make", "-n", "push", "REGISTRY=r.example/me", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert f"cxrtl-train=r.example/me/cxrtl-train:{content_tag()}" in dry.stdout
