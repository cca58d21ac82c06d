"""Whether the images a compiled pipeline names were pushed: asked of their registries before a submit uploads it.

An image that was never pushed shows up on the cluster only as a pod in ErrImagePull, after the pipeline was
uploaded and the run started; the registry can say so in a second. This asks the way ``docker pull`` does:
``GET /v2/`` for the registry's challenge, answered (a token, or Basic) with docker's own credentials
(``~/.docker/config.json``, or ``$DOCKER_CONFIG``: inline ``auths``, ``credHelpers`` and ``credsStore``
through their ``docker-credential-*`` programs), then the OCI distribution API's manifest ``HEAD``. Only a
registry's "no such manifest", given to a client that showed the credentials it has, refuses the submit
(registries such as Nexus and Artifactory hide from anonymous clients behind a 404 what exists); a registry
this machine cannot ask (unreachable, not a registry, no credentials that it accepts) gets one line saying the
image was not checked. Credentials go to the registry and its token service only, and into no message.
"""

from __future__ import annotations

import base64
import binascii
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
# The key `docker login` files Docker Hub's credentials under (and the older names it still reads).
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
# What containerd and docker accept, in their order.
ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    )
)
TIMEOUT_S = 10.0
# Followed like docker (registry.k8s.io redirects); urllib3 drops Authorization on a redirect to another host.
RETRIES = urllib3.Retry(total=5, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=False)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
# distribution/reference's grammar (reference/regexp.go): what docker and containerd accept as a reference.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)


@dataclasses.dataclass(frozen=True)
class Reference:
    """An image reference split the way docker splits it (``docker.io`` and ``library/`` filled in)."""

    registry: str
    repository: str
    reference: str  # a digest where there is one (it names the content), else the tag

    @classmethod
    def parse(cls, ref: str) -> Reference:
        match = _REFERENCE.fullmatch(ref)
        if match is None:
            raise CxrtlError(f"image {ref!r} is not a valid image reference (the cluster would refuse it too)")
        domain, path = match["domain"], match["path"]
        # Docker's rule: the first component is a registry only with a dot, a port or as localhost.
        if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain != domain.lower()):
            domain, path = None, f"{domain}/{path}"
        registry = DOCKER_HUB if domain in (None, "index.docker.io") else domain
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return cls(registry, path, match["digest"] or match["tag"] or "latest")

    @property
    def base_url(self) -> str:
        host = DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry
        # Docker itself speaks plain HTTP to a loopback registry (a port-forward, a local test registry).
        return f"{'http' if _loopback(host) else 'https'}://{host}"

    @property
    def manifest_url(self) -> str:
        return f"{self.base_url}/v2/{self.repository}/manifests/{self.reference}"


def _loopback(host: str) -> bool:
    name = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _Unanswered(Exception):
    """The registry could not be asked; the message says why, naming no credential."""


def credentials(registry: str) -> tuple[str, str] | None:
    """(user, secret) for ``registry`` from docker's configuration, looked up as the docker CLI looks."""
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _Unanswered(f"cannot read {path} ({type(exc).__name__})") from None
    try:
        return _lookup(config, registry)
    except (AttributeError, TypeError, ValueError, binascii.Error):
        # The type only: the value may be a credential.
        raise _Unanswered(f"{path} is not in docker's form where it names {registry}'s credentials") from None


def _lookup(config: dict[str, Any], registry: str) -> tuple[str, str] | None:
    keys = DOCKER_HUB_KEYS if registry == DOCKER_HUB else (registry,)
    helpers, auths = config.get("credHelpers") or {}, config.get("auths") or {}
    if not isinstance(helpers, dict) or not isinstance(auths, dict):
        raise TypeError("credHelpers and auths are objects")
    helper = next((helpers[key] for key in keys if key in helpers), None)
    if helper:
        return _from_helper(helper, keys[0])
    # docker reduces each key to its host name ("https://host/v1/" -> "host") before comparing.
    for key, entry in auths.items():
        if _hostname(key) in {_hostname(k) for k in keys} and (entry or {}).get("auth"):
            user, colon, secret = base64.b64decode(entry["auth"], validate=True).decode(errors="replace").partition(":")
            if not colon:
                raise ValueError("no colon")
            return user, secret
    store = config.get("credsStore")
    return _from_helper(store, keys[0]) if store else None


def _hostname(key: str) -> str:
    return key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]


def _from_helper(helper: str, key: str) -> tuple[str, str] | None:
    """docker's credential-helper protocol: the server on stdin, ``{"Username", "Secret"}`` on stdout."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=key, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if isinstance(found, dict) and isinstance(found.get("Username"), str) and isinstance(found.get("Secret"), str):
        return found["Username"], found["Secret"]
    return None


def _basic(user_secret: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user_secret).encode()).decode()}


def pushed(ref: str, http: urllib3.PoolManager | None = None) -> bool:
    """Whether the registry has ``ref``'s manifest. Raises ``_Unanswered`` where it cannot say."""
    http = http or urllib3.PoolManager(timeout=TIMEOUT_S, retries=RETRIES)
    target = Reference.parse(ref)
    secret = credentials(target.registry)
    status, challenge = _request(http, "GET", f"{target.base_url}/v2/", {})
    if status not in (200, 401):
        raise _Unanswered(f"{target.registry} does not answer as a registry does (GET /v2/: HTTP {status})")
    auth = _authorization(http, target, challenge, secret) if status == 401 else {}
    status, challenge = _request(http, "HEAD", target.manifest_url, auth)
    if status == 401 and not auth:  # an open /v2/, a repository that is not
        auth = _authorization(http, target, challenge, secret)
        status, _ = _request(http, "HEAD", target.manifest_url, auth)
    if status == 404 and not auth and secret:  # a 404 may only hide from anonymous clients what exists
        auth = _basic(secret)
        status, _ = _request(http, "HEAD", target.manifest_url, auth)
    if status == 200:
        return True
    if status == 404:
        return False
    if status in (401, 403):
        raise _Unanswered(_refused(target, status, secret))
    raise _Unanswered(f"{target.registry} answered HTTP {status}")


def _refused(target: Reference, status: int, secret: tuple[str, str] | None) -> str:
    if secret is None:
        return f"{target.registry} wants credentials this machine has not got (docker login {target.registry})"
    return f"{target.registry} refused the credentials of docker login {target.registry} (HTTP {status})"


def _request(http: urllib3.PoolManager, method: str, url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        response = http.request(method, url, headers={"Accept": ACCEPT, **headers})
    except urllib3.exceptions.HTTPError as exc:
        raise _Unanswered(f"cannot reach {_hostname(url)} ({_why(exc)})") from None
    return response.status, response.headers.get("WWW-Authenticate", "")


def _why(exc: urllib3.exceptions.HTTPError) -> str:
    """The socket's reason under urllib3's wrapping: "Connection refused", "Name or service not known"."""
    reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the connection's error
    cause = reason.__cause__ or reason.__context__ or reason
    return str(getattr(cause, "strerror", None) or cause)


def _authorization(
    http: urllib3.PoolManager, target: Reference, challenge: str, secret: tuple[str, str] | None
) -> dict[str, str]:
    """The header that answers the registry's challenge: a pull token for Bearer, the credentials for Basic."""
    scheme, _, params = challenge.partition(" ")
    if scheme.lower() == "basic":
        if secret is None:
            raise _Unanswered(_refused(target, 401, None))
        return _basic(secret)
    if scheme.lower() != "bearer":
        raise _Unanswered(
            f"{target.registry} asks for {scheme or 'an unnamed'} authentication, which is not asked here"
        )
    fields = dict(_CHALLENGE_PARAM.findall(params))
    realm = fields.pop("realm", None)
    if not realm:
        raise _Unanswered(f"{target.registry} asked for a token without naming where to get it")
    query = {"scope": f"repository:{target.repository}:pull", **fields}
    try:
        response = http.request("GET", realm, fields=query, headers=_basic(secret) if secret else {})
    except (urllib3.exceptions.HTTPError, ValueError) as exc:
        reason = _why(exc) if isinstance(exc, urllib3.exceptions.HTTPError) else "not a URL"
        raise _Unanswered(f"cannot reach {target.registry}'s token service ({reason})") from None
    if response.status != 200:
        raise _Unanswered(_refused(target, response.status, secret))
    try:
        answer = json.loads(response.data)
        token = answer.get("token") or answer["access_token"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _Unanswered(f"{target.registry}'s token service answered no token") from None
    return {"Authorization": f"Bearer {token}"}


def check_images(refs: list[str]) -> list[str]:
    """Refuses (CxrtlError) an image in ``refs`` that is not a valid reference or that its registry says it
    does not have; one warning line for each image that could not be checked."""
    http = urllib3.PoolManager(timeout=TIMEOUT_S, retries=RETRIES)
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
                "push it first (make push REGISTRY=...), name images that exist in manifests/base/kustomization.yaml, "
                "or pass --skip-image-check where the registry hides it from this machine's credentials"
            )
    return warnings


def images_of(spec: dict[str, Any]) -> list[str]:
    """Every container image a compiled pipeline's executors name."""
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    return [e["container"]["image"] for e in executors.values() if "image" in (e.get("container") or {})]
