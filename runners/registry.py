"""Whether the images a compiled pipeline names were pushed: asked of their registries before a submit uploads it.

An image that was never pushed shows up on the cluster only as a pod in ErrImagePull, after the pipeline was
uploaded and the run started; the registry can say so in a second. This asks the way ``docker pull`` would: the
OCI distribution API's manifest ``HEAD``, with the registry's token or Basic challenge answered from docker's own
credentials (``~/.docker/config.json``, or ``$DOCKER_CONFIG``: inline ``auths``, ``credHelpers`` and
``credsStore`` through their ``docker-credential-*`` programs). Only a registry's clear "no such manifest"
refuses the submit; a registry this machine cannot ask (unreachable, or no credentials that it accepts) gets
one line saying the image was not checked. Credentials go to the registry and its token service only.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import urllib3

from cxrtl.errors import CxrtlError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
# The keys `docker login` has used for Docker Hub's credentials.
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_S = 10.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Reference:
    """An image reference split the way docker splits it (``docker.io`` and ``library/`` filled in)."""

    registry: str
    repository: str
    reference: str  # a tag, or a digest

    @classmethod
    def parse(cls, ref: str) -> Reference:
        name, at, digest = ref.partition("@")
        first, slash, rest = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, name
        repository, colon, tag = path.rpartition(":")
        if not colon or "/" in tag:
            repository, tag = path, "latest"
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        return cls(registry, repository, digest if at else tag)

    @property
    def manifest_url(self) -> str:
        host = DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry
        # Docker itself speaks plain HTTP to a loopback registry (a port-forward, a local test registry).
        scheme = "http" if _loopback(host) else "https"
        return f"{scheme}://{host}/v2/{self.repository}/manifests/{self.reference}"


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(registry: str) -> tuple[str, str] | None:
    """(user, secret) for ``registry`` from docker's configuration, found as the docker CLI finds them."""
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = DOCKER_HUB_KEYS if registry == DOCKER_HUB else (registry, f"https://{registry}")
    helper = (config.get("credHelpers") or {}).get(registry)
    if helper:
        return _from_helper(helper, keys[0])
    for key in keys:
        inline = ((config.get("auths") or {}).get(key) or {}).get("auth")
        if inline:
            user, _, secret = base64.b64decode(inline).decode(errors="replace").partition(":")
            return user, secret
    return _from_helper(config["credsStore"], keys[0]) if config.get("credsStore") else None


def _from_helper(helper: str, key: str) -> tuple[str, str] | None:
    """docker's credential-helper protocol: the registry on stdin, ``{"Username", "Secret"}`` on stdout."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=key, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        found = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return (found["Username"], found["Secret"]) if found.get("Secret") else None


def _basic(user_secret: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(user_secret).encode()).decode()


class _Unanswered(Exception):
    """The registry could not be asked; the message says why, naming no credential."""


def pushed(ref: str, http: urllib3.PoolManager | None = None) -> bool:
    """Whether the registry has ``ref``'s manifest. Raises ``_Unanswered`` where it cannot say."""
    http = http or urllib3.PoolManager(timeout=TIMEOUT_S, retries=False)
    target = Reference.parse(ref)
    status, challenge = _head(http, target.manifest_url, {})
    secret = None
    if status == 401:
        secret = credentials(target.registry)
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "bearer":
            token = _token(http, target, dict(_CHALLENGE_PARAM.findall(params)), secret)
            status, _ = _head(http, target.manifest_url, {"Authorization": f"Bearer {token}"})
        elif scheme.lower() == "basic" and secret:
            status, _ = _head(http, target.manifest_url, {"Authorization": _basic(secret)})
    if status == 200:
        return True
    if status == 404:
        return False
    raise _Unanswered(_refused(target, status, secret))


def _refused(target: Reference, status: int, secret: tuple[str, str] | None) -> str:
    if status in (401, 403) and secret is None:
        return f"{target.registry} wants credentials this machine has not got (docker login {target.registry})"
    if status in (401, 403):
        return f"{target.registry} refused the credentials of docker login {target.registry} (HTTP {status})"
    return f"{target.registry} answered HTTP {status}"


def _head(http: urllib3.PoolManager, url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        response = http.request("HEAD", url, headers={"Accept": ACCEPT, **headers})
    except urllib3.exceptions.HTTPError as exc:
        raise _Unanswered(f"cannot reach {urllib3.util.parse_url(url).netloc} ({_why(exc)})") from None
    return response.status, response.headers.get("WWW-Authenticate", "")


def _why(exc: urllib3.exceptions.HTTPError) -> str:
    """The socket's reason under urllib3's wrapping: "Connection refused", "Name or service not known"."""
    cause = exc.__cause__ or exc.__context__
    return str(getattr(cause, "strerror", None) or cause or type(exc).__name__)


def _token(
    http: urllib3.PoolManager, target: Reference, challenge: dict[str, str], secret: tuple[str, str] | None
) -> str:
    """A pull token from the realm the registry's challenge names; anonymous without credentials."""
    realm = challenge.get("realm")
    if not realm:
        raise _Unanswered(f"{target.registry} asked for a token without naming where to get it")
    fields = {"scope": challenge.get("scope") or f"repository:{target.repository}:pull"}
    if challenge.get("service"):
        fields["service"] = challenge["service"]
    headers = {"Authorization": _basic(secret)} if secret else {}
    try:
        response = http.request("GET", realm, fields=fields, headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        raise _Unanswered(f"cannot reach {target.registry}'s token service ({_why(exc)})") from None
    if response.status != 200:
        raise _Unanswered(_refused(target, response.status, secret))
    try:
        answer: dict[str, Any] = json.loads(response.data)
        return str(answer.get("token") or answer["access_token"])
    except (ValueError, KeyError, TypeError):
        raise _Unanswered(f"{target.registry}'s token service answered no token") from None


def check_images(refs: list[str]) -> list[str]:
    """Refuses (CxrtlError) when a registry says an image in ``refs`` does not exist; one warning line for each
    image that could not be checked."""
    http = urllib3.PoolManager(timeout=TIMEOUT_S, retries=False)
    warnings = []
    for ref in sorted(set(refs)):
        try:
            found = pushed(ref, http)
        except _Unanswered as exc:
            warnings.append(f"warning: not checked whether {ref} was pushed: {exc}")
            continue
        if not found:
            raise CxrtlError(
                f"image {ref} is not in its registry ({Reference.parse(ref).registry} has no such manifest): "
                "push it first (make push REGISTRY=...) or name images that exist in manifests/base/kustomization.yaml"
            )
    return warnings


def images_of(spec: dict[str, Any]) -> list[str]:
    """Every container image a compiled pipeline's executors name."""
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    return [e["container"]["image"] for e in executors.values() if "image" in (e.get("container") or {})]
