"""`pipeline.py run --runner docker`: the local pipeline with each task in its component's image.

kfp.local's DockerRunner does the running; this module checks beforehand that it can work (an engine that
answers, the images built, nothing that needs a network), mounts the run's folders, and follows the
engine's record of how each task's container exits, from the run's start.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import docker
from docker.models.containers import Container
from docker.types import Mount
from kfp import local

from components.images import CPU, TRAIN, image
from cxrtl import signals
from cxrtl.errors import CxrtlError

RUN_LABEL = "org.cxrtl.run"  # on each task's container: the run folder it belongs to


def check_docker(store: str | None, dataset_source: str | None) -> None:
    """Refuse --runner docker before anything is written, unless an engine answers and holds both images."""
    # The tasks have no network: nothing they read or write may need one.
    if store and store.startswith("s3://"):
        raise CxrtlError(f"--runner docker runs tasks without a network: give --store a folder, not {store}")
    if dataset_source == "kaggle" or (dataset_source or "").startswith("s3://"):
        raise CxrtlError("--runner docker runs tasks without a network: give --dataset-source a .zip or a folder")
    with _engine() as client:
        missing = []
        for name in (TRAIN, CPU):
            try:
                client.images.get(image(name))
            except docker.errors.ImageNotFound:
                missing.append(image(name))
    if missing:
        raise CxrtlError(
            f"--runner docker: the Docker engine has no image {', '.join(missing)}: build them with make images "
            "(or make images-offline where no registry is reachable)"
        )


def runner(out: Path, pipeline_root: Path, arguments: dict) -> local.DockerRunner:
    """kfp.local's DockerRunner for this run, without network; makes ``arguments``' paths absolute.

    kfp.local mounts the pipeline root; the folder store and the dataset are mounted at their own paths
    too (the dataset read-only). The tasks run as the invoking user, so that what they write stays
    theirs; when that is root, as the images' own user, uid 1000. In group 0 either way: it owns the
    images' HOME, and the run's folders are made writable for it.
    """
    uid = os.getuid()
    store = Path(arguments["store"].removeprefix("file://")).resolve()
    dataset = Path(arguments["dataset_source"]).resolve()
    arguments.update(store=str(store), dataset_source=str(dataset))
    for folder in (pipeline_root, store):
        folder.mkdir(parents=True, exist_ok=True)
        if uid == 0:
            for path in (folder, *(p for p in folder.rglob("*") if p.is_dir())):
                path.chmod(path.stat().st_mode | 0o070)
    return local.DockerRunner(
        user=f"{uid or 1000}:0",
        network_mode="none",
        mounts=[
            Mount(str(store), str(store), type="bind"),
            Mount(str(dataset), str(dataset), type="bind", read_only=True),
        ],
        labels={RUN_LABEL: str(out)},
        environment={"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]},
    )


class ContainerEvents:
    """The engine's ``event`` events (start, die, ...) of the run's task containers, from entering on.

    Read live from the start, not asked for at the end: the engine keeps only its last 256 events of every
    kind to replay (moby's daemon/events), and a ten-source run makes about that many, so the first tasks'
    could be gone. A replay at the end adds what the live stream had not delivered yet."""

    def __init__(self, out: Path, event: str) -> None:
        self._filters = {"type": "container", "event": event, "label": f"{RUN_LABEL}={out}"}
        self._live: list[dict] = []
        self._leaving = threading.Event()
        self._cut = False  # the live stream ended before we closed it
        self._engine = _engine()

    def __enter__(self) -> ContainerEvents:
        self._client = self._engine.__enter__()
        self._since = int(time.time())
        # Asked for here, not in the thread: the engine replays from _since what happens before it reads.
        self._stream = self._client.events(since=self._since, filters=self._filters, decode=True)
        self._reader = threading.Thread(target=self._read, name="container-events", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        try:
            for event in self._stream:
                self._live.append(event)
        except (docker.errors.DockerException, ValueError):  # ValueError: a line that is not JSON
            pass
        self._cut = not self._leaving.is_set()

    def seen(self) -> list[dict]:
        """Every such event so far, once each, in order."""
        if self._cut:
            raise CxrtlError(
                "local run: the Docker engine stopped reporting its containers' events during the run, "
                "so whether every task's container succeeded is unknown; run it again"
            )
        until = int(time.time()) + 1
        recent = list(self._client.events(since=self._since, until=until, filters=self._filters, decode=True))
        events = {(e["id"], e["timeNano"]): e for e in [*list(self._live), *recent]}
        return sorted(events.values(), key=lambda e: e["timeNano"])

    def __exit__(self, *exc) -> None:
        self._leaving.set()
        with contextlib.suppress(docker.errors.DockerException):  # over ssh:// it cannot; the reader is a daemon
            self._stream.close()
        self._reader.join(timeout=10)
        self._engine.__exit__(*exc)


def check_exits(ends: ContainerEvents) -> None:
    """Raise if a task's container of the run exited non-zero (``ends``: the run's die events).

    kfp.local 2.17 removes each container as it ends and, when the container is gone before it asks for
    the exit code, counts the task a success; the engine's own record of each container's end says.
    """
    failed = [e["Actor"]["Attributes"] for e in ends.seen() if e["Actor"]["Attributes"].get("exitCode") != "0"]
    if failed:
        exits = ", ".join(f"{a.get('image')} exited with code {a.get('exitCode')}" for a in failed)
        raise CxrtlError(f"local run failed: {len(failed)} task container(s) failed ({exits}); their logs are above")


def stop_tasks(out: Path, timeout_s: float) -> list[str]:
    """SIGTERM to every process in every task container of the run in ``out`` (a train step checkpoints),
    those started meanwhile too; waits up to ``timeout_s`` for them to end and returns the ids of the
    containers still running.

    Not ``docker stop``: that signals a container's first process, here the component's ``sh -ec``, which as
    PID 1 ignores SIGTERM, so the step would get no warning before the SIGKILL."""
    with _engine() as client:

        def running() -> list[Container]:  # equal, and hashed, by id
            return client.containers.list(filters={"label": f"{RUN_LABEL}={out}"})

        def terminate(container: Container) -> bool:
            # kill -1 reaches every process of the container's PID namespace but its first one (and itself);
            # it fails where there is none: the sh has not started the step yet, and would start it unwarned.
            try:
                return container.exec_run(["sh", "-c", "kill -TERM -1"]).exit_code == 0
            except docker.errors.APIError:  # it ended meanwhile
                return True

        return [c.short_id for c in signals.stop_until_quiet(running, terminate, timeout_s)]


class _engine:
    """The Docker engine's client, closed on leaving; one error line where none answers."""

    def __enter__(self) -> docker.DockerClient:
        try:
            self.client = docker.from_env()
            self.client.ping()
        except docker.errors.DockerException:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise CxrtlError(
                f"--runner docker: no Docker engine answers at {where}: start one (sudo systemctl start docker, "
                "or sudo dockerd &), or run with --runner subprocess"
            ) from None
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
