"""A real OCI registry on loopback for the tests: Debian's docker-registry (CNCF distribution 2.8), open, behind
htpasswd (Basic), or behind a token service as ghcr.io and Docker Hub are, with ``push`` for a small image.

The token service is the only piece written here: distribution verifies its JWTs against a certificate, as it
would a real token service's.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
import jwt
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

BINARY = "docker-registry"
SERVICE = "cxrtl-test-registry"
ISSUER = "cxrtl-test-token-service"
# A guard against a registry that hangs while starting, not a speed check.
START_LIMIT_S = 120
MISSING = (
    f"{BINARY} is not installed: make test installs it as root with apt (Debian's docker-registry package); "
    "elsewhere install CNCF distribution's registry as docker-registry on PATH"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TokenService:
    """Answers ``GET /token`` with a pull token: for anyone, or only for ``users`` (user -> password)."""

    def __init__(self, folder: Path, users: dict[str, str] | None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-cert.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.users = users
        self.asked: list[dict[str, str]] = []  # the Authorization header of each request, if any
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> TokenService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _allowed(self, authorization: str | None) -> bool:
        if self.users is None:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        return self.users.get(user) == password

    def _token(self, scope: str) -> str:
        kind, name, actions = scope.split(":")
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "tester",
            "aud": SERVICE,
            "iat": now,
            "nbf": now - 60,
            "exp": now + 300,
            "jti": str(now),
            "access": [{"type": kind, "name": name, "actions": actions.split(",")}],
        }
        chain = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": chain})

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                authorization = self.headers.get("Authorization")
                service.asked.append({"Authorization": authorization or ""})
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                if not service._allowed(authorization):
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service._token(query["scope"])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextmanager
def registry(storage: Path, *, basic: dict[str, str] | None = None, token: TokenService | None = None) -> Iterator[str]:
    """A registry on a free loopback port over ``storage`` (kept between registries); yields ``127.0.0.1:PORT``."""
    if shutil.which(BINARY) is None:
        raise RuntimeError(MISSING)
    port = free_port()
    config: dict = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test"},
    }
    if basic is not None:
        htpasswd = storage.parent / f"htpasswd-{port}"
        htpasswd.write_text(
            "".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in basic.items())
        )
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
    if token is not None:
        config["auth"] = {
            "token": {"realm": token.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(token.bundle)}
        }
    path = storage.parent / f"registry-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([BINARY, "serve", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        http = urllib3.PoolManager(retries=False, timeout=2)
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            try:
                if "Docker-Distribution-Api-Version" in http.request("GET", f"http://127.0.0.1:{port}/v2/").headers:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"{BINARY} exited: {process.stderr.read().decode() if process.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{BINARY} did not answer on port {port}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def hiding_proxy(address: str, user: str, password: str, open_ping: bool = False) -> Iterator[str]:
    """In front of an open registry, what Nexus, Artifactory ("hide existence of unauthorized resources") or an
    nginx with Basic auth do: ``/v2/`` asks for Basic credentials (or answers anyone, with ``open_ping``, as
    where anonymous access is on), and a manifest is 404 to a client without them, existing or not. Yields its
    ``127.0.0.1:PORT``."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    upstream = urllib3.PoolManager(retries=False, timeout=10)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            authorised = self.headers.get("Authorization") == expected
            if self.path == "/v2/" and open_ping:
                self.send_response(200)
            elif self.path == "/v2/" and not authorised:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="hiding"')
            elif not authorised:
                self.send_response(404)
            else:
                accept = self.headers.get("Accept", "")
                self.send_response(
                    upstream.request(self.command, f"http://{address}{self.path}", headers={"Accept": accept}).status
                )
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def push(address: str, repository: str, tag: str) -> str:
    """Pushes a one-layer image to an open registry; returns its manifest's digest."""
    http = urllib3.PoolManager(retries=False, timeout=10)
    base = f"http://{address}/v2/{repository}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    blobs = [config.encode(), f"layer of {repository}:{tag}".encode()]
    for blob in blobs:
        started = http.request("POST", f"{base}/blobs/uploads/")
        assert started.status == 202, started.data
        location = started.headers["Location"]
        url = location if location.startswith("http") else f"http://{address}{location}"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        done = http.request(
            "PUT", f"{url}{'&' if '?' in url else '?'}digest={digest}", body=blob,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert done.status == 201, done.data

    def descriptor(blob: bytes, media_type: str) -> dict:
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(blobs[0], "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(blobs[1], "application/vnd.oci.image.layer.v1.tar+gzip")],
        }
    ).encode()
    put = http.request(
        "PUT", f"{base}/manifests/{tag}", body=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )  # fmt: skip
    assert put.status == 201, put.data
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
