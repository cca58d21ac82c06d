"""Talks to a Kubeflow Pipelines cluster: the ``submit`` and ``schedule`` sub-commands of pipeline.py.

Everything that can be checked offline (the cron expression, the host URL, the ``--param`` names and
types against the compiled package) is checked before the first request, and the server's version right
after it, before anything is uploaded: a typo or a too-old KFP never leaves a half-uploaded pipeline behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kfp
import kfp_server_api
import urllib3
import yaml
from kfp_server_api import ApiException

from components.images import stale_warning
from cxrtl.errors import CxrtlError
from runners import kfp_adapter, registry

CompilePackage = Callable[[argparse.Namespace], Path]
# The run's parameters from the parsed arguments and the typed --param values; a CxrtlError refuses them.
RunParams = Callable[[argparse.Namespace, dict[str, Any]], dict[str, Any]]

DEFAULT_EXPERIMENT = "cxrtl"
# Tried in order when neither --token nor KFP_TOKEN is given: the projected token KFP multi-user
# mounts for pipelines.kubeflow.org, then the pod's own service-account token.
SA_TOKEN_PATHS = (
    "/var/run/secrets/kubeflow/pipelines/token",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
)
# kfp's own override for the first path; honoured so pods configured for kfp.Client work unchanged.
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
# kfp's own variable for the UI's address, honoured as the default of --ui-url.
UI_URL_ENV = "KF_PIPELINES_UI_ENDPOINT"
# Where --host comes from when not given: ours (what the docs export), then the kfp SDK's own (kfp.Client reads it).
HOST_ENVS = ("KFP_HOST", "KF_PIPELINES_ENDPOINT")
# A run's states after which it changes no more (kfp_server_api's V2beta1RuntimeState).
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
STATUS_INTERVAL_S = 10.0
# The oldest KFP backend that runs the compiled pipeline: dsl.Collected over artifacts needs 2.14
# (kubeflow/pipelines#11725), a Secret mapped to env vars with optional=True needs 2.15 (#12216; older
# backends drop the flag, so ingest would fail without the Kaggle Secret). Retries work from 2.5 (#11673).
MIN_KFP_VERSION = (2, 15, 0)
_RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
# (connect, read) seconds for the first request: it is the one that meets an unreachable host.
_PROBE_TIMEOUT = (10, 30)
_PAGE_SIZE = 100


class ClusterError(CxrtlError):
    """A KFP cluster refused, could not be reached, or was given bad input; the message is one line."""


# --------------------------------------------------------------------------------------------- cron


@dataclasses.dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    question_mark: bool = False

    def value(self, text: str) -> int | None:
        if text.isascii() and text.isdigit():
            return int(text)
        if text.upper() in self.names:
            return self.low + self.names.index(text.upper())
        return None

    def expected(self) -> str:
        names = f" or a name {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"a number {self.low}-{self.high}{names}"


# KFP parses schedules with robfig/cron v1: seconds first, and '?' means "any" for the day fields.
_CRON_FIELDS = (
    _CronField("seconds", 0, 59),
    _CronField("minutes", 0, 59),
    _CronField("hours", 0, 23),
    _CronField("day-of-month", 1, 31, question_mark=True),
    _CronField("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    _CronField("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), question_mark=True),
)


def _cron_item_problem(field: _CronField, item: str) -> str | None:
    base, slash, step = item.partition("/")
    if slash and not (step.isascii() and step.isdigit() and int(step) >= 1):
        return f"step {step!r} is not a whole number >= 1"
    if base == "*" or (base == "?" and field.question_mark):
        return None
    if base == "?":
        return "'?' is allowed only for day-of-month and day-of-week"
    start_text, dash, end_text = base.partition("-")
    bounds = []
    for text in (start_text, end_text) if dash else (start_text,):
        value = field.value(text)
        if value is None:
            return f"{text!r} is not {field.expected()}"
        if not field.low <= value <= field.high:
            return f"{value} is outside {field.low}-{field.high}"
        bounds.append(value)
    if bounds[0] > bounds[-1]:
        return f"range {base!r} runs backwards"
    return None


# robfig/cron v1's descriptors, which KFP's API server and scheduler accept (cron.Parse); case matters.
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_SHORTEST_EVERY_S = 60


def _go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration (time.ParseDuration: 24h, 1h30m, 90m, 1.5h); None if it is not one."""
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _GO_DURATION_UNITS[unit] for number, unit in parts)


def _validate_descriptor(expression: str, text: str) -> str:
    if text in CRON_DESCRIPTORS:
        return text
    word, _, duration = text.partition(" ")
    if word != "@every":
        raise ClusterError(
            f"bad --cron {expression!r}: KFP knows the descriptors {', '.join(CRON_DESCRIPTORS)} and "
            "@every DURATION (lower case)"
        )
    seconds = _go_duration_seconds(duration)
    if seconds is None:
        raise ClusterError(f"bad --cron {expression!r}: {duration!r} is not a duration such as 24h, 1h30m or 90m")
    if seconds < _SHORTEST_EVERY_S:
        raise ClusterError(f"bad --cron {expression!r}: every {duration} is too often; give at least 1m")
    return text


def validate_cron(expression: str) -> str:
    """Check a KFP schedule: 6-field cron (SEC MIN HOUR DOM MON DOW) or a descriptor (@daily, @every 24h).

    Returns it with single spaces, as KFP's parser wants a descriptor exactly.
    """
    fields = expression.split()
    if fields and fields[0].startswith("@"):
        return _validate_descriptor(expression, " ".join(fields))
    if len(fields) != 6:
        # A 5-field Unix cron is the usual mistake; robfig would read it shifted by one field.
        raise ClusterError(
            f"bad --cron {expression!r}: {len(fields)} fields, KFP expects 6: SEC MIN HOUR DOM MON DOW "
            "(e.g. '0 0 3 * * *' = daily at 03:00) or a descriptor such as @daily or '@every 24h'"
        )
    for field, text in zip(_CRON_FIELDS, fields, strict=True):
        for item in text.split(","):
            problem = _cron_item_problem(field, item)
            if problem:
                raise ClusterError(f"bad --cron {expression!r}: {field.name} field {text!r}: {problem}")
    return " ".join(fields)


# ------------------------------------------------------------------------------ package and params


def read_pipeline_spec(package: Path) -> dict[str, Any]:
    """The PipelineSpec document of a compiled package (the platform spec, if any, follows it)."""
    try:
        with package.open(encoding="utf-8") as stream:
            spec = next(yaml.safe_load_all(stream), None)
    except (OSError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ClusterError(f"cannot read the compiled pipeline {package}: {reason}") from exc
    if not isinstance(spec, dict) or "pipelineInfo" not in spec:
        raise ClusterError(f"{package} is not a compiled KFP pipeline (no pipelineInfo)")
    return spec


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _to_bool(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(raw) from None


def _to_finite_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _json_of(kind: type) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        value = json.loads(raw)
        if not isinstance(value, kind):
            raise ValueError(raw)
        return value

    return convert


# parameterType in the compiled spec -> (converter, what the user must give)
_CONVERTERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "STRING": (str, "a string"),
    "NUMBER_INTEGER": (int, "an integer"),
    "NUMBER_DOUBLE": (_to_finite_float, "a finite number"),
    "BOOLEAN": (_to_bool, "true or false"),
    "LIST": (_json_of(list), 'a JSON list, e.g. ["a","b"]'),
    "STRUCT": (_json_of(dict), 'a JSON object, e.g. {"k": 1}'),
}


def parse_params(pairs: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` strings into typed run parameters, checked against the package's root inputs."""
    declared: dict[str, dict[str, Any]] = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    values: dict[str, Any] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ClusterError(f"--param {pair!r} is not KEY=VALUE")
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(declared)) or "none"
            raise ClusterError(f"--param {key}: the pipeline has no parameter {key!r}{hint}; it has: {known}")
        if key in values:
            raise ClusterError(f"--param {key} is given twice")
        convert, expected = _CONVERTERS.get(declared[key].get("parameterType", "STRING"), _CONVERTERS["STRING"])
        try:
            values[key] = convert(raw)
        except ValueError:
            raise ClusterError(f"--param {key}={raw}: {key} expects {expected}") from None
    missing = [
        name
        for name, definition in declared.items()
        if name not in values and "defaultValue" not in definition and not definition.get("isOptional")
    ]
    if missing:
        raise ClusterError(f"pipeline parameter {', '.join(missing)} has no default: pass --param {missing[0]}=VALUE")
    return values


# ------------------------------------------------------------------------------------- connection


def check_host(host: str, option: str = "--host") -> str:
    """The address without a trailing slash; KFP behind Kubeflow keeps its /pipeline path."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClusterError(
            f"{option} {host!r} is not an http(s) URL: give e.g. http://localhost:8080 "
            "(after kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80)"
        )
    return host.rstrip("/")


def find_token(explicit: str | None) -> str | None:
    """--token, else KFP_TOKEN, else the first service-account token file present; None means anonymous."""
    if explicit:
        return explicit.strip()
    if os.environ.get("KFP_TOKEN"):
        return os.environ["KFP_TOKEN"].strip()
    override = os.environ.get(SA_TOKEN_PATH_ENV)
    for candidate in (*([override] if override else []), *SA_TOKEN_PATHS):
        path = Path(candidate)
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ClusterError(f"cannot read the token file {path}: {exc.strerror}") from exc
    return None


def _one_line(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _server_message(body: bytes | str | None) -> str | None:
    """KFP answers errors as {"error"|"message": ...}; other proxies answer HTML, which we do not echo."""
    try:
        decoded = json.loads(body or "")
    except ValueError:
        return None
    if isinstance(decoded, dict):
        return decoded.get("message") or decoded.get("error")
    return None


def _unreachable(host: str, reason: object) -> str:
    reason = getattr(reason, "reason", None) or reason  # MaxRetryError wraps the real cause
    # urllib3 prefixes the cause with "HTTPConnection(host=..., port=...): "; the host is named already
    text = re.sub(r"^\w+\(host=[^)]*\): ", "", _one_line(reason))
    text = text.removeprefix("Failed to establish a new connection: ")
    return f"cannot reach KFP at {host} ({text})"


@contextlib.contextmanager
def _calling(host: str, action: str) -> Iterator[None]:
    """Turn kfp's multi-line failures into one ClusterError line; keep kfp.Client's print()s off stdout."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except ApiException as exc:
        if exc.status in (401, 403):
            message = f"KFP at {host} refused the credentials ({exc.status}): pass --token or set KFP_TOKEN"
        elif not exc.status:  # TLS failures arrive as status 0
            message = _unreachable(host, exc.reason)
        else:
            detail = _server_message(exc.body) or exc.reason
            message = f"KFP at {host} failed {action} (HTTP {exc.status}): {_one_line(detail)}"
        raise ClusterError(message) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ClusterError(_unreachable(host, exc)) from exc
    except ValueError as exc:  # kfp.Client reports ambiguous names this way
        raise ClusterError(f"KFP at {host}: {action} failed: {_one_line(exc)}") from exc


class _Client(kfp_adapter.Client):
    """kfp.Client made fit for a CLI: a failed call fails once, at once, instead of retrying.

    kfp retries its health check five times with 5 s sleeps on any error (a refused token included),
    and urllib3 retries and logs every refused connection three times (kfp_adapter.Client stops that).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._health: tuple[str, Any] | None = None
        super().__init__(**kwargs)

    def healthz(self) -> tuple[str, Any]:
        """The health check's content type and decoded body (None if not JSON): one request, kept.

        Read raw: kfp_server_api's model of the answer drops the version the server reports.
        """
        if self._health is None:
            response = self.healthzs.healthz_service_get_healthz(
                _preload_content=False, _request_timeout=_PROBE_TIMEOUT
            )
            try:
                body = json.loads(response.data)
            except ValueError:
                body = None
            self._health = (response.headers.get("Content-Type", ""), body)
        return self._health

    def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
        # kfp.Client.__init__ asks whether KFP is multi-user when no namespace is given.
        _, body = self.healthz()
        return ServerInfo.from_healthz(body) if isinstance(body, dict) else ServerInfo(False, None, False)


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What KFP's health check says. Through the UI (standalone port-forward, Kubeflow's ingress) it is the
    UI server's answer, which names the API server's fields apiServer*; the API server answers them bare."""

    multi_user: bool
    version: str | None  # the API server's release tag, e.g. "2.17.0"; "unknown" for a build without one
    via_ui: bool  # --host is the KFP UI, so run links can be made from it

    @classmethod
    def from_healthz(cls, body: dict[str, Any]) -> ServerInfo:
        via_ui = "apiServerReady" in body
        return cls(
            multi_user=bool(body.get("multi_user", body.get("apiServerMultiUser"))),
            version=body.get("apiServerTagName" if via_ui else "tag_name"),
            via_ui=via_ui,
        )


def check_server_version(host: str, info: ServerInfo) -> None:
    """Refuse a KFP backend older than MIN_KFP_VERSION, or one that does not say which it is."""
    minimum = ".".join(map(str, MIN_KFP_VERSION))
    match = _RELEASE.match(info.version or "")
    if not match:
        raise ClusterError(
            f"KFP at {host} reports version {info.version!r}, not a release: cannot confirm it is {minimum} or "
            "newer; pass --skip-version-check if you know it is"
        )
    if tuple(int(part) for part in match.groups()) < MIN_KFP_VERSION:
        raise ClusterError(
            f"KFP at {host} is version {info.version}; this pipeline needs KFP {minimum} or newer "
            "(artifact fan-in from a ParallelFor, optional Secrets): upgrade Kubeflow Pipelines"
        )


def connect(host: str, token: str | None, namespace: str | None) -> tuple[kfp.Client, str | None, ServerInfo]:
    """A client whose API answered its health check, the namespace to work in (None: single-user), the server."""
    with _calling(host, "the health check"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        # kfp.Client treats its default namespace "kubeflow" as "not given"
        client = _Client(host=host, existing_token=token, namespace=namespace or "kubeflow")
        content_type, body = client.healthz()
    if "json" not in content_type or not isinstance(body, dict):
        raise ClusterError(
            f"KFP at {host} answered the health check with {content_type or 'no content type'}"
            ", not JSON (a login page?): check --host and pass --token or set KFP_TOKEN"
        )
    info = ServerInfo.from_healthz(body)
    if info.via_ui and body.get("apiServerReady") is False:
        raise ClusterError(f"the KFP UI at {host} answers, but cannot reach its API server (ml-pipeline)")
    namespace = namespace or client.get_user_namespace() or None
    if info.multi_user and not namespace:
        raise ClusterError(f"KFP at {host} is multi-user: pass --namespace (your Kubeflow profile namespace)")
    return client, namespace, info


# ------------------------------------------------------------------------------------- operations


@dataclasses.dataclass(frozen=True)
class PipelineVersion:
    pipeline_id: str
    version_id: str
    name: str
    state: str  # "new pipeline", "new version" or "unchanged"


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _latest_version(client: kfp.Client, host: str, pipeline_id: str) -> Any | None:
    with _calling(host, "listing pipeline versions"):
        page = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1)
    return (page.pipeline_versions or [None])[0]


def upload_package(
    client: kfp.Client, host: str, package: Path, pipeline_name: str, namespace: str | None
) -> PipelineVersion:
    """Upload as a new pipeline, or as a new version (named by UTC time and content hash) of an existing one.

    If the latest version holds the same package, it is reused: a ``schedule`` right after a ``submit``
    of the same package points at that version instead of uploading a twin.
    """
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    with _calling(host, "looking up the pipeline"):
        found = client.list_pipelines(filter=_name_filter(pipeline_name), namespace=namespace, page_size=2)
    pipelines = found.pipelines or []
    if len(pipelines) > 1:
        raise ClusterError(
            f"KFP at {host} has {len(pipelines)} pipelines named {pipeline_name!r}: pass --pipeline-name"
        )
    if not pipelines:
        with _calling(host, "uploading the pipeline"):
            pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name, namespace=namespace)
        # The upload creates the first version too but answers with the pipeline only.
        first = _latest_version(client, host, pipeline.pipeline_id)
        if first is None:
            raise ClusterError(f"KFP at {host} created pipeline {pipeline_name!r} without a version")
        return PipelineVersion(pipeline.pipeline_id, first.pipeline_version_id, first.display_name, "new pipeline")
    pipeline_id = pipelines[0].pipeline_id
    latest = _latest_version(client, host, pipeline_id)
    if latest is not None and latest.display_name.endswith(f"-{digest[:12]}"):
        return PipelineVersion(pipeline_id, latest.pipeline_version_id, latest.display_name, "unchanged")
    version_name = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{digest[:12]}"
    with _calling(host, "uploading a pipeline version"):
        version = client.upload_pipeline_version(
            str(package),
            pipeline_version_name=version_name,
            pipeline_id=pipeline_id,
            description=f"package sha256 {digest}",
        )
    return PipelineVersion(pipeline_id, version.pipeline_version_id, version_name, "new version")


def ensure_experiment(client: kfp.Client, host: str, name: str, namespace: str | None) -> str:
    with _calling(host, f"getting or creating experiment {name!r}"):
        return client.create_experiment(name, namespace=namespace).experiment_id


def list_recurring_runs(
    client: kfp.Client, host: str, namespace: str | None, experiment_id: str | None = None
) -> list[Any]:
    runs: list[Any] = []
    page_token = ""
    while True:
        with _calling(host, "listing recurring runs"):
            page = client.list_recurring_runs(
                page_token=page_token, page_size=_PAGE_SIZE, experiment_id=experiment_id, namespace=namespace
            )
        runs.extend(page.recurring_runs or [])
        page_token = page.next_page_token
        if not page_token:
            return runs


# ------------------------------------------------------------------------------------ CLI handlers


@dataclasses.dataclass(frozen=True)
class _Prepared:
    host: str
    client: kfp.Client
    namespace: str | None
    package: Path
    pipeline_name: str
    params: dict[str, Any]
    ui_url: str | None  # where the KFP UI is, for links; None when unknown


def _ui_url(args: argparse.Namespace, host: str, info: ServerInfo) -> str | None:
    """--ui-url (or KF_PIPELINES_UI_ENDPOINT), else --host if the health check came from the UI."""
    explicit = args.ui_url or os.environ.get(UI_URL_ENV)
    if explicit:
        return check_host(explicit, "--ui-url")
    return host if info.via_ui else None


def _prepare(args: argparse.Namespace, compile_package: CompilePackage, run_params: RunParams | None) -> _Prepared:
    """Offline checks first, then compile, then whether the images were pushed, then the first request and the
    server's version."""
    host = check_host(host_of(args))
    if args.ui_url:
        check_host(args.ui_url, "--ui-url")
    package = Path(compile_package(args))
    spec = read_pipeline_spec(package)
    params = parse_params(args.param, spec)
    if run_params:
        params = run_params(args, params)
    if not args.skip_image_check:
        for warning in registry.check_images(registry.images_of(spec)):
            print(warning, file=sys.stderr)
    client, namespace, info = connect(host, find_token(args.token), args.namespace)
    if not args.skip_version_check:
        check_server_version(host, info)
    pipeline_name = args.pipeline_name or spec["pipelineInfo"]["name"]
    if warning := stale_warning():
        print(warning, file=sys.stderr)
    return _Prepared(host, client, namespace, package, pipeline_name, params, _ui_url(args, host, info))


def _link_line(ready: _Prepared, page: str, object_id: str) -> str:
    if ready.ui_url:
        return f"{ready.ui_url}/#/{page}/{object_id}"
    return (
        f"ID {object_id}: --host is KFP's API server, not its UI, so no link; find it in the KFP UI, "
        f"or pass --ui-url (or set {UI_URL_ENV}) to get one"
    )


def _version_line(version: PipelineVersion, pipeline_name: str) -> str:
    if version.state == "unchanged":
        return f"pipeline {pipeline_name!r}: package unchanged, reusing version {version.name!r}"
    return f"pipeline {pipeline_name!r} version {version.name!r} uploaded ({version.state})"


def _submit(args: argparse.Namespace, compile_package: CompilePackage, run_params: RunParams | None) -> int:
    ready = _prepare(args, compile_package, run_params)
    version = upload_package(ready.client, ready.host, ready.package, ready.pipeline_name, ready.namespace)
    experiment = args.experiment or DEFAULT_EXPERIMENT
    experiment_id = ensure_experiment(ready.client, ready.host, experiment, ready.namespace)
    run_name = args.run_name or f"{ready.pipeline_name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    with _calling(ready.host, "creating the run"):
        run = ready.client.run_pipeline(
            experiment_id,
            run_name,
            params=ready.params,
            pipeline_id=version.pipeline_id,
            version_id=version.version_id,
        )
    print(_version_line(version, ready.pipeline_name))
    print(f"run {run_name!r} started in experiment {experiment!r}")
    print(_link_line(ready, "runs/details", run.run_id))
    return 0


def _schedule(args: argparse.Namespace, compile_package: CompilePackage, run_params: RunParams | None) -> int:
    if args.list:
        return _schedule_list(args)
    if args.delete:
        return _schedule_delete(args)
    cron = validate_cron(args.cron)
    ready = _prepare(args, compile_package, run_params)
    name = args.name or f"{ready.pipeline_name}-scheduled"
    clash = [run for run in list_recurring_runs(ready.client, ready.host, ready.namespace) if run.display_name == name]
    if clash:
        raise ClusterError(
            f"a recurring run named {name!r} already exists ({clash[0].recurring_run_id}): "
            f"remove it with 'schedule --delete {name}' or pick another --name"
        )
    version = upload_package(ready.client, ready.host, ready.package, ready.pipeline_name, ready.namespace)
    experiment = args.experiment or DEFAULT_EXPERIMENT
    experiment_id = ensure_experiment(ready.client, ready.host, experiment, ready.namespace)
    follow = args.pipeline_version == "latest"
    # Without a version ID, KFP's scheduler takes the pipeline's latest version at each run
    # (resource_manager.go CreateJob); kfp.Client's create_recurring_run always pins one, hence the API.
    reference = kfp_server_api.V2beta1PipelineVersionReference(
        pipeline_id=version.pipeline_id, pipeline_version_id=None if follow else version.version_id
    )
    body = kfp_server_api.V2beta1RecurringRun(
        experiment_id=experiment_id,
        display_name=name,
        description=f"cron {cron}; " + ("latest pipeline version" if follow else f"pipeline version {version.name}"),
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        pipeline_version_reference=reference,
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(parameters=ready.params),
        trigger=kfp_server_api.V2beta1Trigger(cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)),
        # One retraining at a time, and a paused schedule does not replay every missed slot.
        max_concurrency=1,
        no_catchup=True,
    )
    with _calling(ready.host, "creating the recurring run"):
        recurring = ready.client.recurring_runs.recurring_run_service_create_recurring_run(recurring_run=body)
    print(_version_line(version, ready.pipeline_name))
    runs_what = "the latest pipeline version at each run" if follow else f"pinned to version {version.name!r}"
    print(
        f"recurring run {name!r} ({recurring.recurring_run_id}) created in experiment {experiment!r}: "
        f"cron {cron!r}, {runs_what}, max concurrency 1, no catch-up"
    )
    print(_link_line(ready, "recurringrun/details", recurring.recurring_run_id))
    return 0


def _connect_for_listing(args: argparse.Namespace) -> tuple[str, kfp.Client, str | None]:
    host = check_host(host_of(args))
    client, namespace, _ = connect(host, find_token(args.token), args.namespace)
    return host, client, namespace


def _status(args: argparse.Namespace, default_store: str) -> int:
    """Each task's state (with --wait: each change, until the run ends), the run's state, and where a
    succeeded run's report is in the store."""
    from cxrtl.store.keys import report_prefix

    host, client, _ = _connect_for_listing(args)
    shown: dict[str, str] = {}
    while True:
        with _calling(host, f"getting run {args.run_id}"):
            run = client.get_run(args.run_id)
        tasks = (run.run_details.task_details if run.run_details else None) or []
        for task in tasks:
            state = str(task.state or "PENDING")
            if shown.get(task.task_id) != state:
                shown[task.task_id] = state
                print(f"{task.display_name or task.task_id:<40} {state}", flush=True)
        if not args.wait or run.state in FINAL_STATES:
            break
        time.sleep(args.interval)
    print(f"run {run.display_name!r} ({run.run_id}): {run.state}")
    if run.state == "SUCCEEDED":
        parameters = (run.runtime_config.parameters if run.runtime_config else None) or {}
        store = str(parameters.get("store", default_store)).rstrip("/")
        print(f"report: {store}/{report_prefix(run.run_id)} (none if nothing had changed since the last run)")
    return 1 if run.state in ("FAILED", "CANCELED") else 0


def add_status_command(subparsers: argparse._SubParsersAction, default_store: str) -> argparse.ArgumentParser:
    """Add ``status RUN_ID [--wait]``; ``default_store`` is the pipeline's, for a run that did not set one."""
    status = subparsers.add_parser(
        "status",
        help="a KFP run's task states; with --wait, follow it to its end",
        description="Print each task's state of a run; with --wait, each change until the run ends. At the end, "
        "the run's state and, if it succeeded, where its report is in the store. Exit status 1 when the run "
        "failed or was cancelled.",
    )
    _add_connection_arguments(status)
    status.add_argument("run_id", metavar="RUN_ID", help="the run's ID (the end of the link submit printed)")
    status.add_argument("--wait", action="store_true", help="follow the run until it has ended")
    status.add_argument(
        "--interval",
        type=_checked_seconds,
        default=STATUS_INTERVAL_S,
        metavar="SECONDS",
        help="seconds between two looks at the run with --wait",
    )
    status.set_defaults(func=lambda args: _status(args, default_store))
    return status


def _checked_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _describe_trigger(run: Any) -> str:
    trigger = run.trigger
    if trigger and trigger.cron_schedule:
        return f"cron {trigger.cron_schedule.cron!r}"
    if trigger and trigger.periodic_schedule:
        return f"every {trigger.periodic_schedule.interval_second}s"
    return "no trigger"


def _schedule_list(args: argparse.Namespace) -> int:
    host, client, namespace = _connect_for_listing(args)
    experiment_id = None
    if args.experiment:
        with _calling(host, f"finding experiment {args.experiment!r}"):
            experiment_id = client.get_experiment(experiment_name=args.experiment, namespace=namespace).experiment_id
    runs = list_recurring_runs(client, host, namespace, experiment_id)
    if not runs:
        print("no recurring runs")
    for run in runs:
        reference = run.pipeline_version_reference
        version = f"version {reference.pipeline_version_id}" if reference.pipeline_version_id else "latest version"
        print(
            f"{run.recurring_run_id}\t{run.display_name}\t{_describe_trigger(run)}\t{version}\t{run.status or run.mode}"
        )
    return 0


def _schedule_delete(args: argparse.Namespace) -> int:
    host, client, namespace = _connect_for_listing(args)
    runs = list_recurring_runs(client, host, namespace)
    target = [run for run in runs if run.recurring_run_id == args.delete] or [
        run for run in runs if run.display_name == args.delete
    ]
    if not target:
        raise ClusterError(f"KFP at {host} has no recurring run with ID or name {args.delete!r}")
    if len(target) > 1:
        ids = ", ".join(run.recurring_run_id for run in target)
        raise ClusterError(f"{len(target)} recurring runs are named {args.delete!r} ({ids}): delete one by ID")
    with _calling(host, f"deleting recurring run {args.delete!r}"):
        client.delete_recurring_run(target[0].recurring_run_id)
    print(f"deleted recurring run {target[0].display_name!r} ({target[0].recurring_run_id})")
    return 0


def host_of(args: argparse.Namespace) -> str:
    """--host, else the first of HOST_ENVS that is set."""
    host = args.host or next((os.environ[name] for name in HOST_ENVS if os.environ.get(name)), None)
    if not host:
        raise ClusterError(f"no KFP address: pass --host URL or set {' or '.join(HOST_ENVS)}")
    return host


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        help="KFP address: its UI (e.g. http://localhost:8080 after a port-forward of ml-pipeline-ui, or "
        f"https://KUBEFLOW/pipeline) or its API server (default: ${', else $'.join(HOST_ENVS)})",
    )
    parser.add_argument(
        "--token",
        help="bearer token (default: $KFP_TOKEN, else the in-cluster service-account token); "
        "prefer KFP_TOKEN, command lines are visible to other users",
    )
    parser.add_argument("--namespace", help="Kubeflow profile namespace (multi-user KFP; default: none, single-user)")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help=f"experiment name, created if missing (default: {DEFAULT_EXPERIMENT})")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter; repeatable; typed by the pipeline (int, float, bool, JSON list/object)",
    )
    parser.add_argument("--pipeline-name", help="pipeline name in KFP (default: the compiled pipeline's name)")
    parser.add_argument(
        "--ui-url",
        help=f"the KFP UI's address, for the printed link (default: ${UI_URL_ENV}, else --host when it is the UI)",
    )
    parser.add_argument(
        "--skip-version-check",
        action="store_true",
        help=f"upload even if KFP does not report a version >= {'.'.join(map(str, MIN_KFP_VERSION))}",
    )
    parser.add_argument(
        "--skip-image-check",
        action="store_true",
        help="upload without asking the images' registries whether they were pushed (for a registry only the "
        "cluster reaches)",
    )


def add_cluster_arguments(
    subparsers: argparse._SubParsersAction, compile_package: CompilePackage, run_params: RunParams | None = None
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add ``submit`` and ``schedule``; return both parsers so compile-time options can be added to them.

    ``compile_package(args)`` gets the parsed arguments and returns the path of a compiled ``.yaml``
    package; it is called only when something is uploaded (not for ``schedule --list/--delete``).
    ``run_params(args, params)`` makes the run's parameters of the typed ``--param`` values and the options the
    caller added to the parsers, or refuses them (a CxrtlError), before any request.
    The handlers raise ClusterError (a CxrtlError) for anything the user must fix.
    """
    submit = subparsers.add_parser(
        "submit",
        help="upload the pipeline (or a new version) to KFP and start a run",
        description="Upload the compiled pipeline to Kubeflow Pipelines (a new version if the name exists), "
        "start a run and print its UI link.",
    )
    _add_connection_arguments(submit)
    _add_run_arguments(submit)
    submit.add_argument("--run-name", help="run name (default: pipeline name and UTC time)")
    submit.set_defaults(func=lambda args: _submit(args, compile_package, run_params))

    schedule = subparsers.add_parser(
        "schedule",
        help="create, list or delete a KFP recurring run",
        description="Create a recurring run (max concurrency 1, no catch-up), or list or delete them. "
        "Times are in the KFP scheduler's time zone (UTC unless configured).",
    )
    _add_connection_arguments(schedule)
    _add_run_arguments(schedule)
    action = schedule.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--cron",
        metavar='"SEC MIN HOUR DOM MON DOW"|@DESCRIPTOR',
        help="6-field cron, e.g. '0 0 3 * * *' (03:00 daily), or @daily, @weekly, '@every 24h'...",
    )
    action.add_argument("--list", action="store_true", help="list recurring runs (of --experiment if given)")
    action.add_argument("--delete", metavar="ID_OR_NAME", help="delete a recurring run by ID or name")
    schedule.add_argument("--name", help="recurring run name (default: <pipeline name>-scheduled)")
    schedule.add_argument(
        "--pipeline-version",
        choices=("pinned", "latest"),
        default="pinned",
        help="pinned (default): every run uses the version uploaded now; latest: each run uses the pipeline's "
        "newest version, whatever a later submit uploads",
    )
    schedule.set_defaults(func=lambda args: _schedule(args, compile_package, run_params))
    return submit, schedule
