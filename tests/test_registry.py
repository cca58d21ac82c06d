"""runners/registry.py against a real registry (tests/oci_registry.py): open, behind a token service as ghcr.io and
Docker Hub are, behind htpasswd, and behind a proxy that hides from anonymous clients what exists; credentials
from a docker config, inline or through a credential helper or store."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from oci_registry import TokenService, free_port, hiding_proxy, push, registry

from cxrtl.errors import CxrtlError
from runners.registry import Reference, check_images, credentials, pushed

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
        (f"localhost:5000/x/y@sha256:{'ab' * 32}", ("localhost:5000", "x/y", f"sha256:{'ab' * 32}")),
        ("index.docker.io/python:3", ("docker.io", "library/python", "3")),
        ("Me/cxrtl:1", ("Me", "cxrtl", "1")),  # an upper-case first component is a host, as in docker
        ("[::1]:5000/x:1", ("[::1]:5000", "x", "1")),
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
    with TokenService(storage.parent, users=None) as token, registry(storage, token=token) as address:
        assert pushed(f"{address}/cxrtl/train:1")
        assert not pushed(f"{address}/cxrtl/train:2")
    assert {asked["Authorization"] for asked in token.asked} == {""}


def test_a_private_registry_is_asked_with_docker_logins_credentials(storage: Path, digest: str, no_docker_config: Path):
    said = []
    with TokenService(storage.parent, users={USER: PASSWORD}) as token, registry(storage, token=token) as address:
        said += check_images([f"{address}/cxrtl/train:2"])
        assert said[-1] == (
            f"warning: not checked whether {address}/cxrtl/train:2 was pushed: {address} wants credentials this "
            f"machine has not got (docker login {address})"
        )
        login(no_docker_config, address, password="wrong-password")
        said += check_images([f"{address}/cxrtl/train:2"])
        assert said[-1].endswith(f"{address} refused the credentials of docker login {address} (HTTP 401)")
        login(no_docker_config, address)
        assert pushed(f"{address}/cxrtl/train:1")
        with pytest.raises(CxrtlError, match="is not in its registry") as refused:
            check_images([f"{address}/cxrtl/train:2"])
        said.append(str(refused.value))
    for secret in (PASSWORD, "wrong-password", base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert not [line for line in said if secret in line]


@pytest.mark.parametrize("open_ping", [False, True])
def test_a_registry_that_hides_from_anonymous_clients_is_asked_with_credentials(
    open_ping: bool, storage: Path, digest: str, no_docker_config: Path
):
    """Its 404 to a client without credentials is no answer: refusing on it would refuse images that exist."""
    with registry(storage) as upstream, hiding_proxy(upstream, USER, PASSWORD, open_ping) as address:
        if not open_ping:
            [warning] = check_images([f"{address}/cxrtl/train:1"])
            assert "wants credentials this machine has not got" in warning
        login(no_docker_config, address)
        assert pushed(f"{address}/cxrtl/train:1")
        assert not pushed(f"{address}/cxrtl/train:2")


def helper_program(folder: Path, name: str, server: str) -> None:
    """A docker-credential-NAME on PATH that knows credentials for ``server`` only, as docker's helpers answer:
    the server on stdin, {"ServerURL", "Username", "Secret"} on stdout, else an error and exit 1."""
    helper = folder / f"docker-credential-{name}"
    helper.write_text(
        f'#!/bin/sh\nread server\n[ "$server" = "{server}" ] || {{ echo "credentials not found"; exit 1; }}\n'
        f'printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_a_credential_helper_is_asked_as_docker_asks_it(
    key: str, storage: Path, digest: str, no_docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    with TokenService(storage.parent, users={USER: PASSWORD}) as token, registry(storage, token=token) as address:
        helper_program(bin_folder, "cxrtltest", address)
        config = {"credHelpers": {address: "cxrtltest"}} if key == "credHelpers" else {"credsStore": "cxrtltest"}
        (no_docker_config / "config.json").write_text(json.dumps(config))
        assert pushed(f"{address}/cxrtl/train:1")
        assert not pushed(f"{address}/cxrtl/train:2")


def test_docker_hubs_credentials_are_found_under_the_keys_docker_login_uses(no_docker_config: Path, tmp_path: Path):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (no_docker_config / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    )
    assert credentials("docker.io") == (USER, PASSWORD)
    (no_docker_config / "config.json").write_text(json.dumps({"auths": {"https://r.example/v1/": {"auth": auth}}}))
    assert credentials("r.example") == (USER, PASSWORD)  # docker compares the key's host name only
    assert credentials("docker.io") is None


@pytest.mark.parametrize(
    "config",
    [
        "{not json",
        '["a list"]',
        '{"auths": [1]}',
        '{"auths": {"ADDRESS": "x"}}',
        '{"auths": {"ADDRESS": {"auth": "not base64!"}}}',
        '{"auths": {"ADDRESS": {"auth": 5}}}',
        '{"auths": {"ADDRESS": {"auth": "bm9jb2xvbg=="}}}',
        '{"credHelpers": ["x"]}',
    ],
)
def test_a_docker_config_not_in_dockers_form_is_one_warning_line(config: str, no_docker_config: Path):
    address = f"127.0.0.1:{free_port()}"
    (no_docker_config / "config.json").write_text(config.replace("ADDRESS", address))
    [warning] = check_images([f"{address}/cxrtl/train:1"])
    assert warning.startswith(f"warning: not checked whether {address}/cxrtl/train:1 was pushed: ")
    assert str(no_docker_config / "config.json") in warning


@pytest.mark.parametrize("ref", ["r.example/x/y:1#frag", "r.example/X/Y:1", "r.example/x@", "[zz]:5000/x:1"])
def test_an_invalid_reference_is_refused_in_one_line(ref: str, no_docker_config: Path):
    with pytest.raises(CxrtlError, match=r"is not a valid image reference"):
        check_images([ref])


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
