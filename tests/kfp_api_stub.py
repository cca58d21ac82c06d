"""A local stand-in of the Kubeflow Pipelines v2beta1 REST API that records every request.

It keeps just enough state (pipelines, versions, experiments, runs, recurring runs) for kfp.Client's
calls to succeed the way a real server answers them: snake_case JSON, 404 for unknown IDs, 409 for a
duplicate pipeline name, and errors shaped ``{"error", "code", "message"}``. Tests read ``requests``.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
_CREATED_AT = "2026-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any = None
    fields: dict[str, str] = field(default_factory=dict)  # multipart form: name -> text (files decoded)
    filenames: dict[str, str] = field(default_factory=dict)  # multipart form: name -> uploaded file name


class _Failure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _named(items: Iterable[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """Items matching the request's display_name EQUALS filter (kfp sends the operation as 1 or "EQUALS")."""
    wanted = None
    if query.get("filter"):
        for predicate in json.loads(query["filter"]).get("predicates", []):
            if predicate.get("key") == "display_name" and predicate.get("operation") in (1, "EQUALS"):
                wanted = predicate.get("stringValue", predicate.get("string_value"))
    return [item for item in items if wanted is None or item["display_name"] == wanted]


def _page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> dict[str, Any]:
    start = int(query.get("page_token") or 0)
    size = int(query.get("page_size") or 0) or len(items) or 1
    answer: dict[str, Any] = {key: items[start : start + size], "total_size": len(items)}
    if start + size < len(items):
        answer["next_page_token"] = str(start + size)
    return answer


class KfpApiStub:
    """``with KfpApiStub() as kfp: ...`` serves on ``kfp.url`` (127.0.0.1, an ephemeral port).

    reject_with: answer every request with this status (401, 403) and a KFP-shaped error.
    answer_html: answer every request 200 with an HTML page, as a login proxy in front of KFP does.
    multi_user: what healthz reports.
    version: the API server's release tag healthz reports (``tag_name``; "unknown" in a build without one).
    via_ui: answer healthz as the KFP UI server does in front of the API (``apiServerTagName``...), which
        is what a port-forward of ml-pipeline-ui or Kubeflow's ingress reach; otherwise as the API server.
    """

    def __init__(
        self,
        reject_with: int | None = None,
        answer_html: bool = False,
        multi_user: bool = False,
        version: str = "2.17.0",
        via_ui: bool = False,
    ) -> None:
        self.reject_with = reject_with
        self.answer_html = answer_html
        self.multi_user = multi_user
        self.version = version
        self.via_ui = via_ui
        self.requests: list[Recorded] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self._progress: dict[str, list[dict[str, Any]]] = {}
        self._faults: dict[tuple[str, str], tuple[int, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> KfpApiStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def calls(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests with this method whose path (after /apis/v2beta1) matches the regex fully."""
        return [r for r in self.requests if r.method == method and re.fullmatch(API + path, r.path)]

    def progress(self, run_id: str, *snapshots: dict[str, Any]) -> None:
        """How run ``run_id`` moves on: each GET of it merges the next snapshot (``state``, ``run_details``...)
        into the run, and the last snapshot stays for every later GET."""
        self._progress[run_id] = list(snapshots)

    def fail(self, method: str, path: str, status: int, message: str) -> None:
        """Answer requests with this method and path (after /apis/v2beta1, a regex) with an error from now on."""
        self._faults[(method, path)] = (status, message)

    # ---------------------------------------------------------------------------------- plumbing

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                stub._serve(self)

            do_POST = do_DELETE = do_PATCH = do_GET

        return Handler

    def _record(self, handler: BaseHTTPRequestHandler) -> Recorded:
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        recorded = Recorded(handler.command, parts.path, query, {k.lower(): v for k, v in handler.headers.items()})
        content_type = handler.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                recorded.fields[name] = part.get_payload(decode=True).decode("utf-8")
                if part.get_filename():
                    recorded.filenames[name] = part.get_filename()
        elif body:
            recorded.json = json.loads(body)
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        recorded = self._record(handler)
        if self.answer_html:
            self._reply(handler, 200, b"<html><body>Sign in</body></html>", "text/html; charset=utf-8")
            return
        try:
            if self.reject_with:
                raise _Failure(self.reject_with, "Unauthenticated: invalid or missing bearer token")
            for (method, path), (status, message) in self._faults.items():
                if recorded.method == method and re.fullmatch(API + path, recorded.path):
                    raise _Failure(status, message)
            with self._lock:
                answer = self._route(recorded)
            status = 200
        except _Failure as failure:
            status = failure.status
            code = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6}.get(status, 2)
            answer = {"error": str(failure), "code": code, "message": str(failure), "details": []}
        self._reply(handler, status, json.dumps(answer).encode(), "application/json")

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}"

    # ------------------------------------------------------------------------------------- routes

    def _route(self, r: Recorded) -> dict[str, Any]:
        path = r.path.removeprefix(API)
        routes = [
            ("GET", "/healthz", self._healthz),
            ("POST", "/pipelines/upload", self._upload),
            ("POST", "/pipelines/upload_version", self._upload_version),
            ("GET", "/pipelines", self._list_pipelines),
            ("GET", "/pipelines/(?P<pid>[^/]+)/versions", self._list_versions),
            ("GET", "/experiments", self._list_experiments),
            ("POST", "/experiments", self._create_experiment),
            ("POST", "/runs", self._create_run),
            ("GET", "/runs/(?P<run_id>[^/]+)", self._get_run),
            ("GET", "/recurringruns", self._list_recurring),
            ("POST", "/recurringruns", self._create_recurring),
            ("DELETE", "/recurringruns/(?P<rid>[^/]+)", self._delete_recurring),
        ]
        for method, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if r.method == method and match:
                return action(r, **match.groupdict())
        raise _Failure(404, f"stub: no route for {r.method} {r.path}")

    def _healthz(self, r: Recorded) -> dict[str, Any]:
        # The shapes of backend/src/apiserver/main.go (healthzResponse) and frontend/server/handlers/healthz.ts.
        if self.via_ui:
            return {
                "apiServerCommitHash": "stub",
                "apiServerTagName": self.version,
                "apiServerMultiUser": self.multi_user,
                "multi_user": self.multi_user,
                "apiServerReady": True,
                "buildDate": "",
                "frontendCommitHash": "stub",
                "frontendTagName": self.version,
            }
        return {"commit_sha": "stub", "tag_name": self.version, "multi_user": self.multi_user}

    def _upload(self, r: Recorded) -> dict[str, Any]:
        name = r.query.get("display_name") or r.query.get("name")
        if "uploadfile" not in r.fields or not name:
            raise _Failure(400, "upload needs an uploadfile and a name")
        namespace = r.query.get("namespace", "")
        if any(p["display_name"] == name and p["namespace"] == namespace for p in self.pipelines.values()):
            raise _Failure(409, f"Failed to upload pipeline: pipeline {name} already exists")
        pipeline = {
            "pipeline_id": self._new_id("pipeline"),
            "display_name": name,
            "namespace": namespace,
            "created_at": _CREATED_AT,
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, r.fields["uploadfile"])
        return pipeline

    def _add_version(self, pipeline_id: str, name: str, package: str) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self._new_id("version"),
            "display_name": name,
            "created_at": _CREATED_AT,
            "package": package,
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _upload_version(self, r: Recorded) -> dict[str, Any]:
        pipeline_id = r.query.get("pipelineid", "")
        name = r.query.get("display_name") or r.query.get("name")
        if pipeline_id not in self.pipelines:
            raise _Failure(404, f"pipeline {pipeline_id} not found")
        if "uploadfile" not in r.fields or not name:
            raise _Failure(400, "upload_version needs an uploadfile and a name")
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            raise _Failure(409, f"pipeline version {name} already exists")
        version = self._add_version(pipeline_id, name, r.fields["uploadfile"])
        return {k: v for k, v in version.items() if k != "package"}

    def _list_pipelines(self, r: Recorded) -> dict[str, Any]:
        namespace = r.query.get("namespace", "")
        found = [p for p in _named(self.pipelines.values(), r.query) if p["namespace"] == namespace]
        return _page(found, r.query, "pipelines")

    def _list_versions(self, r: Recorded, pid: str) -> dict[str, Any]:
        if pid not in self.pipelines:
            raise _Failure(404, f"pipeline {pid} not found")
        found = [
            {k: v for k, v in version.items() if k != "package"}
            for version in self.versions.values()
            if version["pipeline_id"] == pid
        ]
        if r.query.get("sort_by", "").endswith(" desc"):
            found.reverse()  # IDs grow with creation time
        return _page(found, r.query, "pipeline_versions")

    def _list_experiments(self, r: Recorded) -> dict[str, Any]:
        namespace = r.query.get("namespace", "")
        found = [e for e in _named(self.experiments.values(), r.query) if e["namespace"] == namespace]
        return _page(found, r.query, "experiments")

    def _create_experiment(self, r: Recorded) -> dict[str, Any]:
        body = r.json or {}
        if not body.get("display_name"):
            raise _Failure(400, "experiment needs a display_name")
        experiment = {
            "experiment_id": self._new_id("experiment"),
            "display_name": body["display_name"],
            "namespace": body.get("namespace") or "",
            "created_at": _CREATED_AT,
            "storage_state": "AVAILABLE",
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _check_references(self, body: dict[str, Any]) -> None:
        if body.get("experiment_id") not in self.experiments:
            raise _Failure(404, f"experiment {body.get('experiment_id')} not found")
        reference = body.get("pipeline_version_reference") or {}
        if reference.get("pipeline_id") not in self.pipelines:
            raise _Failure(404, f"pipeline {reference.get('pipeline_id')} not found")
        # No version ID: the pipeline's latest version (for a recurring run: at each run).
        if "pipeline_version_id" in reference:
            version = self.versions.get(reference["pipeline_version_id"])
            if version is None or version["pipeline_id"] != reference["pipeline_id"]:
                raise _Failure(404, f"pipeline version {reference} not found")

    def _create_run(self, r: Recorded) -> dict[str, Any]:
        body = dict(r.json or {})
        self._check_references(body)
        run = {**body, "run_id": self._new_id("run"), "state": "PENDING", "created_at": _CREATED_AT}
        self.runs[run["run_id"]] = run
        return run

    def _get_run(self, r: Recorded, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise _Failure(404, f"run {run_id} not found")
        snapshots = self._progress.get(run_id)
        if snapshots:
            run.update(snapshots.pop(0) if len(snapshots) > 1 else snapshots[0])
        return run

    def _create_recurring(self, r: Recorded) -> dict[str, Any]:
        body = dict(r.json or {})
        self._check_references(body)
        if not (body.get("trigger") or {}).get("cron_schedule", {}).get("cron"):
            raise _Failure(400, "recurring run needs trigger.cron_schedule.cron")
        recurring = {
            **body,
            "recurring_run_id": self._new_id("recurring"),
            "max_concurrency": str(body.get("max_concurrency", "1")),  # int64 is a JSON string in proto3
            "status": "ENABLED",
            "namespace": self.experiments[body["experiment_id"]]["namespace"],
            "created_at": _CREATED_AT,
        }
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return recurring

    def _list_recurring(self, r: Recorded) -> dict[str, Any]:
        found = list(self.recurring_runs.values())
        if r.query.get("experiment_id"):
            found = [run for run in found if run["experiment_id"] == r.query["experiment_id"]]
        elif r.query.get("namespace"):
            found = [run for run in found if run["namespace"] == r.query["namespace"]]
        # The one v2beta1 list whose field has a camelCase json_name in the proto (and in kfp_server_api).
        return _page(_named(found, r.query), r.query, "recurringRuns")

    def _delete_recurring(self, r: Recorded, rid: str) -> dict[str, Any]:
        if self.recurring_runs.pop(rid, None) is None:
            raise _Failure(404, f"recurring run {rid} not found")
        return {}
