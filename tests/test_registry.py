"""runners/registry.py against a real registry (tests/oci_registry.py): open, behind a token service as ghcr.io and
Docker Hub are, and behind htpasswd; credentials from a docker config, inline or through a credential helper."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from oci_registry import TokenService, free_port, push, registry

from cxrtl.errors import CxrtlError
from runners.registry import Reference, check_images, pushed

USER, PASSWORD = "tester", "s3cret-never-printed"


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    folder = tmp_path / "storage"
    folder.mkdir()
    return folder


@pytest.fixture
def digest(storage: Path) -> str:
    """cxrtl/train:1 pushed to ``storage`` through an open registry; later registries serve it with auth."""
    with registry(storage) as address:
        return push(address, "cxrtl/train", "1")


@pytest.fixture
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


def login(folder: Path, address: str, password: str = PASSWORD) -> None:
    """What `docker login ADDRESS` leaves in a config without a credential store."""
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {address: {"auth": auth}}}))


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("ghcr.io/me/cxrtl-train:0.1.0-abc", ("ghcr.io", "me/cxrtl-train", "0.1.0-abc")),
        ("python:3.11-slim", ("docker.io", "library/python", "3.11-slim")),
        ("me/cxrtl", ("docker.io", "me/cxrtl", "latest")),
        ("localhost:5000/x/y@sha256:ab", ("localhost:5000", "x/y", "sha256:ab")),
    ],
)
def test_references_split_as_docker_splits_them(ref: str, parts: tuple[str, str, str]):
    assert (Reference.parse(ref).registry, Reference.parse(ref).repository, Reference.parse(ref).reference) == parts


def test_an_open_registry_tells_pushed_from_missing(storage: Path, digest: str, no_docker_config: Path):
    with registry(storage) as address:
        assert pushed(f"{address}/cxrtl/train:1")
        assert pushed(f"{address}/cxrtl/train@{digest}")
        assert not pushed(f"{address}/cxrtl/train:2")  # MANIFEST_UNKNOWN
        assert not pushed(f"{address}/cxrtl/never:1")  # NAME_UNKNOWN
        with pytest.raises(CxrtlError) as refused:
            check_images([f"{address}/cxrtl/train:1", f"{address}/cxrtl/train:2"])
    assert str(refused.value).startswith(f"image {address}/cxrtl/train:2 is not in its registry")
    assert "make push" in str(refused.value)


def test_a_token_registry_open_to_anonymous_pulls_is_asked_as_ghcr_io_is(
    storage: Path, digest: str, no_docker_config: Path
):
    token = TokenService(storage.parent, users=None)
    with registry(storage, token=token) as address:
        assert pushed(f"{address}/cxrtl/train:1")
        assert not pushed(f"{address}/cxrtl/train:2")
    assert {asked["Authorization"] for asked in token.asked} == {""}


def test_a_private_registry_is_asked_with_docker_logins_credentials(storage: Path, digest: str, no_docker_config: Path):
    token = TokenService(storage.parent, users={USER: PASSWORD})
    with registry(storage, token=token) as address:
        [warning] = check_images([f"{address}/cxrtl/train:2"])
        assert warning == (
            f"warning: not checked whether {address}/cxrtl/train:2 was pushed: {address} wants credentials this "
            f"machine has not got (docker login {address})"
        )
        login(no_docker_config, address, password="wrong")
        [warning] = check_images([f"{address}/cxrtl/train:2"])
        assert warning.endswith(f"{address} refused the credentials of docker login {address} (HTTP 401)")
        login(no_docker_config, address)
        assert pushed(f"{address}/cxrtl/train:1")
        with pytest.raises(CxrtlError, match="is not in its registry"):
            check_images([f"{address}/cxrtl/train:2"])
    assert PASSWORD not in warning


def test_a_credential_helper_is_asked_as_docker_asks_it(
    storage: Path, digest: str, no_docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    helper = bin_folder / "docker-credential-cxrtltest"
    # The protocol: the server on stdin, {"ServerURL", "Username", "Secret"} on stdout.
    helper.write_text(
        f'#!/bin/sh\nread server\nprintf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    token = TokenService(storage.parent, users={USER: PASSWORD})
    with registry(storage, token=token) as address:
        (no_docker_config / "config.json").write_text(json.dumps({"credHelpers": {address: "cxrtltest"}}))
        assert pushed(f"{address}/cxrtl/train:1")
        assert not pushed(f"{address}/cxrtl/train:2")


def test_a_registry_behind_htpasswd_is_asked_with_basic_auth(storage: Path, digest: str, no_docker_config: Path):
    with registry(storage, basic={USER: PASSWORD}) as address:
        [warning] = check_images([f"{address}/cxrtl/train:1"])
        assert "wants credentials this machine has not got" in warning
        login(no_docker_config, address)
        assert check_images([f"{address}/cxrtl/train:1"]) == []
        with pytest.raises(CxrtlError, match="is not in its registry"):
            check_images([f"{address}/cxrtl/train:2"])


def test_an_unreachable_registry_is_named_and_not_checked(no_docker_config: Path):
    address = f"127.0.0.1:{free_port()}"
    assert check_images([f"{address}/cxrtl/train:1"]) == [
        f"warning: not checked whether {address}/cxrtl/train:1 was pushed: cannot reach {address} (Connection refused)"
    ]
