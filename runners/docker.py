"""`pipeline.py run --runner docker`: the local pipeline with each task in its component's image.

kfp.local's DockerRunner does the running; this module checks beforehand that it can work (an engine that
answers, the images built, nothing that needs a network), mounts the run's folders, and reads the
engine's record of how each task's container exited afterwards.
"""

from __future__ import annotations

import os
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


def check_exits(out: Path, since: float) -> None:
    """Raise if a task's container of this run exited non-zero since ``since`` (a time.time()).

    kfp.local 2.17 removes each container as it ends and, when the container is gone before it asks for
    the exit code, counts the task a success; the engine's own record of each container's end says.
    """
    with _engine() as client:
        ends = client.events(
            since=int(since),
            until=int(time.time()) + 1,
            filters={"type": "container", "event": "die", "label": f"{RUN_LABEL}={out}"},
            decode=True,
        )
        failed = [e["Actor"]["Attributes"] for e in ends if e["Actor"]["Attributes"].get("exitCode") != "0"]
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
