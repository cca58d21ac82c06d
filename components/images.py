"""The container images the pipeline's tasks run in, read from the one place they are named.

That place is the ``images:`` block of ``manifests/base/kustomization.yaml``: kustomize writes it into the
manifests, and this module hands the same references to the components (``base_image=image("cxrtl-cpu")``)
and to ``make images``. To use another registry or tag, run in ``manifests/base``::

    kustomize edit set image cxrtl-train=REGISTRY/cxrtl-train:TAG cxrtl-cpu=REGISTRY/cxrtl-cpu:TAG

then build and push the images and compile the pipeline again. Only the base is read: an image changed in
an overlay would reach the manifests but not the compiled pipeline.

``make push`` tags both images with :func:`content_tag`: the package version and a hash of everything the
image is built from, so a tag names one content and a change gives a new tag (a node that pulled an image
never runs stale code under the old name), while a push without a change reuses the tag.

``python -m components.images [NAME ...]`` prints the references (all of them without a NAME);
``python -m components.images --content-tag [BUILD ARGS]`` prints the tag the checkout's images get.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

from cxrtl import __version__
from cxrtl.errors import CxrtlError

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZATION = ROOT / "manifests" / "base" / "kustomization.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
TRAIN = "cxrtl-train"
CPU = "cxrtl-cpu"


@cache
def images(path: Path = KUSTOMIZATION) -> dict[str, str]:
    """Every entry of the ``images:`` block of ``path`` as name -> ``newName:newTag`` (or ``@digest``)."""
    try:
        entries = (yaml.safe_load(path.read_text()) or {}).get("images")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise CxrtlError(f"{path}: cannot read the images: block ({exc})") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
        raise CxrtlError(f"{path}: images: must be a list of entries with a name")
    refs = {}
    for entry in entries:
        name = str(entry["name"])
        repository = str(entry.get("newName", name))
        # A digest pins the content itself, so it wins over a tag, as it does in kustomize.
        if entry.get("digest"):
            refs[name] = f"{repository}@{entry['digest']}"
        elif entry.get("newTag") is not None:
            refs[name] = f"{repository}:{entry['newTag']}"
        else:
            raise CxrtlError(f"{path}: image {name!r} has neither newTag nor digest; pin it")
    return refs


def image(name: str) -> str:
    """The reference of image ``name`` (``cxrtl-train`` or ``cxrtl-cpu``) as the manifests render it."""
    refs = images()
    if name not in refs:
        raise CxrtlError(f"{KUSTOMIZATION}: no image named {name!r} in images: (there are: {', '.join(refs)})")
    return refs[name]


def build_inputs(root: Path = ROOT) -> list[str]:
    """The files an image is built from: the Dockerfile and the build context's files that git tracks or
    would track (the wheelhouse is git-ignored; its wheels are named by pyproject.toml's pins)."""
    # .dockerignore's "!" lines are the build context: what the Dockerfile can copy into an image.
    allowed = [line[1:].strip() for line in (root / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *allowed],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CxrtlError(f"{root}: the content tag needs a git checkout (git ls-files failed); set TAG=") from exc
    files = {name for name in listed.decode().split("\0") if name and (root / name).is_file()}
    return sorted(files | {str(DOCKERFILE.relative_to(ROOT))})


def content_tag(build_args: str = "", root: Path = ROOT) -> str:
    """``VERSION-HASH``: the hash covers each build input's path and bytes. Build arguments (another CUDA
    build, say) add ``-HASH`` of their own, so the images of two builds of one checkout keep apart."""
    digest = hashlib.sha256()
    for name in build_inputs(root):
        digest.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    tag = f"{__version__}-{digest.hexdigest()[:12]}"
    if build_args.strip():
        tag += f"-{hashlib.sha256(build_args.strip().encode()).hexdigest()[:8]}"
    return tag


def stale_warning() -> str | None:
    """One line when the ``images:`` block's tags are not this checkout's content tag: the cluster would run
    images built from other code (``make push`` builds and names the right ones). None when they match."""
    try:
        expected = content_tag()
    except CxrtlError as exc:
        return f"warning: cannot tell whether the images match this code ({exc})"
    # A digest names one content already, which is the point of the content tag.
    stale = [ref for ref in images().values() if "@" not in ref and f":{expected}" not in ref]
    if not stale:
        return None
    return (
        f"warning: {', '.join(stale)} in {KUSTOMIZATION.relative_to(ROOT)} may not be this code (its images "
        f"would be tagged {expected}): run make push REGISTRY=... first, or the tasks run the images' code"
    )


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--content-tag"]:
            print(content_tag(" ".join(argv[1:])))
            return 0
        for line in [image(name) for name in argv] if argv else images().values():
            print(line)
    except CxrtlError as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
