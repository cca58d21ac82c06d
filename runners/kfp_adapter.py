"""What runners/ needs from the kfp SDK beyond its public API, in one place, for kfp 2.17: the client's retries
(runners/kfp_api.py) and where kfp.local leaves a run's outputs (runners/local.py).

kfp.Client takes no retry setting, and its constructor sends the first request (the health check, when
no namespace is given) with urllib3's default of three retries per refused connection, each logged. The
one hook that runs before that request is ``kfp.Client._load_config``, which builds the
``kfp_server_api.Configuration`` the client's connection pool is made from; :class:`Client` sets the
pool's retries there. ``Configuration.set_default`` would be public, but kfp makes its Configuration
with the plain constructor, which does not read it.

``VERIFIED`` is the kfp release series this was checked against; tests/test_sdk_adapters.py fails when
the installed kfp is another, or when this hook changes shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kfp
import urllib3

VERIFIED = "2.17"

# A failed request fails at once: no retry of a refused connection, a read or an error status. Redirects
# are still followed (an ingress may send the client on).
NO_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5)


class Client(kfp.Client):
    """kfp.Client whose requests are not retried."""

    def _load_config(self, *args: Any, **kwargs: Any) -> Any:
        config = super()._load_config(*args, **kwargs)
        config.retries = NO_RETRIES
        return config


# kfp.local keeps a run's outputs as a Vertex-style layout with no public reader: a folder per run,
# <pipeline_root>/<pipeline name>-<time>/, and in it a folder per task holding the task's ExecutorOutput (proto3 JSON).
LOCAL_EXECUTOR_OUTPUT = "executor_output.json"


def local_run_folders(pipeline_root: Path) -> set[Path]:
    """The run folders kfp.local has made in ``pipeline_root``."""
    return {p for p in pipeline_root.iterdir() if p.is_dir()} if pipeline_root.is_dir() else set()


def local_task_parameters(run_folder: Path, task: str) -> dict[str, Any] | None:
    """The output parameters of ``task`` (its name in the pipeline, e.g. ``check-changes``) in a kfp.local run's
    folder; None where it did not run or did not finish."""
    path = run_folder / task / LOCAL_EXECUTOR_OUTPUT
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("parameterValues", {})


def local_task_artifact(run_folder: Path, task: str, name: str) -> Path:
    """Where ``task``'s output artifact ``name`` is in a kfp.local run's folder."""
    return run_folder / task / name
