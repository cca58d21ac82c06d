"""The images' Dockerfiles: hadolint passes at its default threshold (and fails on a broken Dockerfile),
and each keeps what docker/ promises: a pinned base, a non-root user, dependencies installed before the
source is copied, only the package in the build context, no credentials. No Docker engine runs here,
so nothing is built; these are the checks that need none.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
HADOLINT = Path(sys.executable).parent / "hadolint"
REQUIREMENTS_SCRIPT = ROOT / "docker" / "pyproject_requirements.py"
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|CREDENTIAL|KAGGLE", re.IGNORECASE)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def test_there_is_a_training_and_a_cpu_image():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.train"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_hadolint_passes(dockerfile):
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\nCOPY . /app\n"
    )
    result = hadolint(broken)
    assert result.returncode != 0
    # latest tag; unpinned apt package; unpinned pip package; pip cache kept in the layer.
    for rule in ("DL3007", "DL3008", "DL3013", "DL3042"):
        assert rule in result.stdout, f"{rule} not reported:\n{result.stdout}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_ignored_rules_are_justified(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+ignore=", line):
            reason = lines[number - 1].strip() if number else ""
            assert reason.startswith("#") and "hadolint" not in reason, f"{dockerfile.name}:{number + 1} unexplained"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_dockerfile_properties(dockerfile):
    steps = instructions(dockerfile)
    kinds = [kind for kind, _ in steps]

    bases = [args for kind, args in steps if kind == "FROM"]
    assert len(bases) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases

    users = [args for kind, args in steps if kind == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), f"last USER {users}: not a numeric non-root uid"
    assert kinds.index("USER") > max(i for i, kind in enumerate(kinds) if kind == "RUN"), "a RUN after USER"

    env = " ".join(args for kind, args in steps if kind == "ENV")
    assert "PYTHONUNBUFFERED=1" in env.split()

    copies = [(i, args.split()[:-1]) for i, (kind, args) in enumerate(steps) if kind == "COPY"]
    sources = [source for _, group in copies for source in group]
    assert "ADD" not in kinds
    assert not [s for s in sources if s.startswith(("components", "pipeline.py", "."))], sources
    first_pyproject = next(i for i, group in copies if "pyproject.toml" in group)
    source_copy = next(i for i, group in copies if "cxrtl/" in group)
    dependency_install = next(
        i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "-r requirements.txt" in args
    )
    assert first_pyproject < dependency_install < source_copy, "dependencies must be installed before cxrtl/ is copied"
    assert "pyproject_requirements.py pipeline " in steps[dependency_install][1], "kfp comes with [pipeline]"

    for kind, args in steps:
        if kind in ("ARG", "ENV", "LABEL"):
            assert not SECRET_LIKE.search(args), f"{kind} {args}"


def test_each_image_checks_its_torch_build():
    cpu = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    train = (ROOT / "docker" / "Dockerfile.train").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and "torch.version.cuda is None" in cpu
    assert "download.pytorch.org" not in train and "assert torch.version.cuda," in train


def test_build_context_holds_only_what_the_images_copy():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    assert patterns[0] == "*", "the context must start from nothing"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for dockerfile in DOCKERFILES
        for kind, args in instructions(dockerfile)
        if kind == "COPY"
        for source in args.split()[:-1]
    }
    assert included == copied


def test_requirements_come_from_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    project = tomllib.loads(pyproject.decode())["project"]
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "pipeline"], input=pyproject, capture_output=True, check=True
    )
    lines = result.stdout.decode().splitlines()
    assert lines == project["dependencies"] + project["optional-dependencies"]["pipeline"]
    # Dockerfile.cpu takes the torch pins out of this list with grep; they must be there, pinned.
    grep = re.search(r"grep -E '([^']+)' requirements.txt", (ROOT / "docker" / "Dockerfile.cpu").read_text())
    assert grep, "Dockerfile.cpu no longer selects the torch pins with grep -E"
    torch_pins = [line for line in lines if re.search(grep.group(1), line)]
    assert [pin.split("==")[0] for pin in torch_pins] == ["torch", "torchvision"], torch_pins


def test_requirements_script_rejects_an_unknown_extra():
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "gpu"],
        input=(ROOT / "pyproject.toml").read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"no extra gpu" in result.stderr
