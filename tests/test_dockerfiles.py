"""The images' Dockerfile: hadolint passes at its default threshold (and fails on a broken Dockerfile),
and it keeps what docker/ promises: a base pinned by tag and digest, a non-root user, dependencies
installed before the source is copied, no wheel in the image, only the package in the build context, no
credentials; and its build scripts refuse a bad base image or an empty wheelhouse with one line. These
checks need no Docker engine; tests/test_containers.py builds and runs the images where one answers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from refusal import one_error_line

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
REQUIREMENTS_SCRIPT = ROOT / "docker" / "pyproject_requirements.py"
CHECK_BASE = ROOT / "docker" / "check-base.sh"
INSTALL_PACKAGES = ROOT / "docker" / "install-packages.sh"
IGNORE_PRAGMA = re.compile(r"^\s*#\s*hadolint\b.*\bignore\s*=", re.MULTILINE)
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


def test_one_dockerfile_builds_both_images():
    assert sorted(p.name for p in (ROOT / "docker").glob("Dockerfile*")) == ["Dockerfile"]


def test_hadolint_passes():
    result = hadolint(DOCKERFILE)
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


def test_no_hadolint_rule_is_ignored():
    # Neither a pragma (`# hadolint ignore=...`, `# hadolint global ignore=...`) nor a config file in the
    # folder hadolint runs in (it reads .hadolint.yaml from there).
    assert not IGNORE_PRAGMA.search(DOCKERFILE.read_text())
    assert not list(ROOT.glob(".hadolint.y*ml"))


def test_the_ignore_check_sees_every_pragma():
    for pragma in ("# hadolint ignore=DL3008", "#hadolint global ignore=DL3008,DL3013", "# hadolint  ignore=DL3007"):
        assert IGNORE_PRAGMA.search(f"FROM x\n{pragma}\nRUN true\n"), pragma
    assert not IGNORE_PRAGMA.search("# install, ignoring hadolint's advice nowhere\nRUN true\n")


def stages(steps: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """The build stages by name (the last one, the image, as ""), each with its instructions."""
    named: dict[str, list[tuple[str, str]]] = {}
    current = None
    for kind, args in steps:
        if kind == "FROM":
            words = args.split()
            current = named.setdefault(words[2] if len(words) == 3 and words[1].upper() == "AS" else "", [])
        elif current is not None:
            current.append((kind, args))
    return named


def test_dockerfile_properties():
    steps = instructions(DOCKERFILE)
    default_base = next(args for kind, args in steps if kind == "ARG" and args.startswith("BASE_IMAGE="))
    # An explicit registry, the tag and the digest of the multi-platform index.
    assert re.fullmatch(
        r"BASE_IMAGE=docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default_base
    ), default_base
    assert [args for kind, args in steps if kind == "FROM"] == ["${BASE_IMAGE} AS base", "base AS packages", "base"]
    by_stage = stages(steps)
    image = by_stage[""]

    users = [args for kind, args in image if kind == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), f"last USER {users}: not a numeric non-root uid"
    kinds = [kind for kind, _ in image]
    assert kinds.index("USER") > max(i for i, kind in enumerate(kinds) if kind == "RUN"), "a RUN after USER"

    env = " ".join(args for kind, args in by_stage["base"] if kind == "ENV")
    assert "PYTHONUNBUFFERED=1" in env.split()

    sources = [source for kind, args in steps if kind == "COPY" for source in args.split()[:-1]]
    assert "ADD" not in [kind for kind, _ in steps]
    assert not [s for s in sources if s.startswith(("components", "runners", "pipeline.py", "."))], sources

    # Dependencies in their own stage, from pyproject.toml alone, before the image copies cxrtl/; the
    # image takes the venv from that stage and never the wheelhouse.
    packages = by_stage["packages"]
    assert any(kind == "RUN" and "install-packages.sh" in args for kind, args in packages)
    assert not any(kind == "COPY" and "cxrtl/" in args for kind, args in packages)
    image_copies = [args for kind, args in image if kind == "COPY"]
    assert image_copies[0] == "--from=packages /opt/venv /opt/venv", image_copies
    assert not any("WHEELHOUSE" in args for args in image_copies)
    assert any("cxrtl/" in args for args in image_copies[1:])
    assert "pyproject_requirements.py pipeline " in INSTALL_PACKAGES.read_text(), "kfp comes with [pipeline]"

    for kind, args in steps:
        if kind in ("ARG", "ENV", "LABEL"):
            assert not SECRET_LIKE.search(args), f"{kind} {args}"


def test_the_build_checks_its_torch_build():
    script = INSTALL_PACKAGES.read_text()
    assert 'download.pytorch.org/whl/$index"' in script and "index=cpu" in script
    assert 'if wanted == "cuda" and torch.version.cuda != runtime:' in script
    assert 'wanted, got = sys.argv[1], "cuda" if torch.version.cuda else "cpu"' in script
    assert "if got != wanted:" in script


def test_build_context_holds_only_what_the_image_copies():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    assert patterns[0] == "*", "the context must start from nothing"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    steps = instructions(DOCKERFILE)
    copied = {
        source.rstrip("/")
        for kind, args in steps
        if kind == "COPY" and not args.startswith("--from=")
        for source in args.split()[:-1]
    }
    # ${WHEELHOUSE:-default}: the default is copied without a wheelhouse, make wheelhouse's folder with one.
    wheelhouse = re.compile(r"\$\{WHEELHOUSE:-([^}]+)\}")
    copied = {wheelhouse.sub(r"\1", source) for source in copied} | {"build/wheelhouse"}
    assert included == copied


def run_script(script: Path, *args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(["/bin/sh", str(script), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_check_base_passes_on_python_3_11(tmp_path):
    # This machine's Python is the project's 3.11, with venv.
    (tmp_path / "python3").symlink_to(sys.executable)
    result = run_script(CHECK_BASE, cwd=tmp_path, path=f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr


def test_check_base_names_a_missing_python_in_one_line(tmp_path):
    result = run_script(CHECK_BASE, cwd=tmp_path, path=str(tmp_path))
    line = one_error_line(result.returncode, result.stderr, "check-base: ", expected_status=1)
    assert line == "check-base: the base image has no python3; cxrtl needs Python 3.11 with its venv module"


def test_check_base_names_the_wrong_python_version_in_one_line(tmp_path):
    # A python3 that reports 3.12: the real interpreter with its version_info replaced before the check.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.version_info = (3, 12, 1, 'final', 0)\n")
    (tmp_path / "python3").write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} "$@"\n')
    (tmp_path / "python3").chmod(0o755)
    result = run_script(CHECK_BASE, cwd=tmp_path, path=f"{tmp_path}:/usr/bin:/bin")
    line = one_error_line(result.returncode, result.stderr, "check-base: ", expected_status=1)
    assert line == "check-base: the base image has Python 3.12; cxrtl needs Python 3.11"


def test_install_packages_refuses_an_empty_wheelhouse_before_anything_is_installed(tmp_path):
    (tmp_path / "wheelhouse").mkdir()
    result = run_script(INSTALL_PACKAGES, "cuda", "build/wheelhouse", cwd=tmp_path)
    line = one_error_line(result.returncode, result.stderr, "install-packages: ", expected_status=1)
    assert line == "install-packages: the wheelhouse build/wheelhouse holds no wheels (make wheelhouse fills it)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheelhouse"]


def test_install_packages_refuses_an_unknown_torch_build(tmp_path):
    result = run_script(INSTALL_PACKAGES, "rocm", "", cwd=tmp_path)
    line = one_error_line(result.returncode, result.stderr, "install-packages: ", expected_status=1)
    assert line == "install-packages: TORCH must be cuda or cpu, got 'rocm'"
    assert list(tmp_path.iterdir()) == []


def test_install_packages_refuses_a_malformed_cuda_build(tmp_path):
    result = run_script(INSTALL_PACKAGES, "cuda", "", "12.6", cwd=tmp_path)
    line = one_error_line(result.returncode, result.stderr, "install-packages: ", expected_status=1)
    assert line == "install-packages: TORCH_CUDA must be cuXYZ such as cu130 or cu126, got '12.6'"
    assert list(tmp_path.iterdir()) == []


def test_the_default_cuda_build_has_its_minimum_driver_in_the_one_table():
    from cxrtl.device import MIN_DRIVER

    default = re.search(r"^ARG TORCH_CUDA=cu([0-9]+)([0-9])$", DOCKERFILE.read_text(), re.MULTILINE)
    assert default, "docker/Dockerfile sets no default TORCH_CUDA"
    assert f"{default.group(1)}.{default.group(2)}" in MIN_DRIVER
    # The image finds GKE's driver mount, where cxrtl.device looks too.
    assert "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib " in DOCKERFILE.read_text()


def test_requirements_come_from_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "pipeline"],
        input=(ROOT / "pyproject.toml").read_bytes(),
        capture_output=True,
        check=True,
    )
    lines = result.stdout.decode().splitlines()
    assert lines == (
        pyproject["build-system"]["requires"] + project["dependencies"] + project["optional-dependencies"]["pipeline"]
    )
    # install-packages.sh takes the torch pins out of this list with grep for the CPU index.
    grep = re.search(r"grep -E '([^']+)' requirements.txt", INSTALL_PACKAGES.read_text())
    assert grep, "install-packages.sh no longer selects the torch pins with grep -E"
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
