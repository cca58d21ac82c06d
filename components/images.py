"""The container images the pipeline's tasks run in, read from the one place they are named.

That place is the ``images:`` block of ``manifests/base/kustomization.yaml``: kustomize writes it into the
manifests, and this module hands the same references to the components (``base_image=image("cxrtl-cpu")``)
and to ``make images``. To use another registry or tag, run in ``manifests/base``::

    kustomize edit set image cxrtl-train=REGISTRY/cxrtl-train:TAG cxrtl-cpu=REGISTRY/cxrtl-cpu:TAG

then build and push the images and compile the pipeline again. Only the base is read: an image changed in
an overlay would reach the manifests but not the compiled pipeline.

``python -m components.images [NAME ...]`` prints the references (all of them without a NAME).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import yaml

from cxrtl.errors import CxrtlError

KUSTOMIZATION = Path(__file__).resolve().parents[1] / "manifests" / "base" / "kustomization.yaml"
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


def main(argv: list[str]) -> int:
    try:
        for line in [image(name) for name in argv] if argv else images().values():
            print(line)
    except CxrtlError as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
