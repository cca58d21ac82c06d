"""The SDK adapters (cxrtl/store/minio_adapter.py, cxrtl/weights/torch_adapter.py, runners/kfp_adapter.py): each holds
what cxrtl needs beyond an SDK's public API, checked against one release series. These tests fail when the installed
SDK is another series, or when the internals an adapter uses change shape; then check the adapter against
the new release (the store and weights tests exercise both end to end) and move ``VERIFIED``.
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import kfp
import minio
import pytest
import torch
from minio import Minio
from minio.error import InvalidResponseError, ServerError

from cxrtl.store import minio_adapter
from cxrtl.weights import torch_adapter
from runners import kfp_adapter


def _series(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- minio ----------------------------------------------------------------------------------------------


def test_minio_is_the_series_the_adapter_was_checked_against():
    assert _series(minio.__version__) == minio_adapter.VERIFIED


def test_minio_internals_keep_the_shape_the_adapter_uses():
    assert _parameters(Minio._create_multipart_upload) == ["self", "bucket_name", "object_name", "headers"]
    assert _parameters(Minio._abort_multipart_upload) == ["self", "bucket_name", "object_name", "upload_id"]
    assert _parameters(Minio._put_object) == ["self", "bucket_name", "object_name", "data", "headers", "query_params"]
    # put_object still has no request headers: what it is given as metadata becomes x-amz-meta-*.
    assert "headers" not in _parameters(Minio.put_object)
    # put_object still aborts only on an Exception, which is why the adapter aborts on the rest.
    assert "except Exception" in inspect.getsource(Minio.put_object)
    assert minio_adapter.response_status(InvalidResponseError(403, "text/html", "<h1>no</h1>")) == 403
    assert minio_adapter.response_status(ServerError("server failed", 503)) == 503


# --- torch ----------------------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _refusal(path: Path) -> pickle.UnpicklingError:
    with pytest.raises(pickle.UnpicklingError) as caught:
        torch.load(path, weights_only=True)
    return caught.value


def test_torch_is_the_series_the_adapter_was_checked_against():
    assert _series(torch.__version__) == torch_adapter.VERIFIED


@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_torch_refusals_still_name_the_global_and_the_reason(tmp_path, writer):
    path = tmp_path / "evil.pt"
    payload = {"state_dict": {"conv1.weight": _RunsCode()}}
    if writer == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    refusal = _refusal(path)
    assert torch_adapter.unsafe_globals(path, refusal) == ["posix.system"]
    assert torch_adapter.refusal_reason(refusal).endswith("GLOBAL posix.system whose module posix is blocked.")


def test_torch_names_what_its_unpickler_cannot_parse(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes([0x80, 0x02, 0x95]) + bytes(64))  # protocol 2, then an opcode it does not take
    refusal = _refusal(path)
    assert torch_adapter.unsafe_globals(path, refusal) == []
    assert torch_adapter.refusal_reason(refusal) == "Unsupported operand 149"


def test_torch_public_api_names_unsafe_globals_of_zip_checkpoints(tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(1), "f": _RunsCode()}, buffer)
    (tmp_path / "x.pt").write_bytes(buffer.getvalue())
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "x.pt") == ["posix.system"]


# --- kfp ------------------------------------------------------------------------------------------------


def test_kfp_is_the_series_the_adapter_was_checked_against():
    assert _series(kfp.__version__) == kfp_adapter.VERIFIED


def test_kfp_builds_its_connection_pool_from_the_adapters_configuration():
    # A namespace given: the constructor sends no request, so the closed port is never tried.
    with pytest.warns(FutureWarning, match="only works with Kubeflow Pipeline v2"):  # every kfp.Client says it
        client = kfp_adapter.Client(host="http://127.0.0.1:1", namespace="team-a")
    pool = client.healthzs.api_client.rest_client.pool_manager
    assert pool.connection_pool_kw["retries"] is kfp_adapter.NO_RETRIES


def test_kfp_loads_its_configuration_before_its_first_request():
    """The first request (the health check, when no namespace is given) must already go without retries."""
    source = inspect.getsource(kfp.Client.__init__)
    assert source.index("self._load_config(") < source.index("self.get_kfp_healthz(")


def test_kfp_local_leaves_each_tasks_output_parameters_where_the_adapter_reads_them(tmp_path: Path):
    """A real kfp.local run, in a subprocess (kfp.local's configuration is global): one folder per run, in it a
    folder per task, its parameters read back as they were returned, its artifacts where the adapter says."""
    script = f"""
from typing import NamedTuple
from kfp import dsl, local
from kfp.dsl import Markdown, Output

@dsl.component
def answer(why: Output[Markdown]) -> NamedTuple("Answer", [("changed", bool), ("reason", str)]):
    open(why.path, "w").write("because")
    return False, "nothing new"

@dsl.pipeline
def tiny():
    answer()

local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(tmp_path / "root")!r})
tiny()
"""
    (tmp_path / "tiny.py").write_text(script)  # a file: KFP reads the component's source back from it
    # TMPDIR: kfp.local leaves its workspace and each task's code folder there.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, str(tmp_path / "tiny.py")], env=env, check=True, capture_output=True, timeout=300)
    (run,) = kfp_adapter.local_run_folders(tmp_path / "root")
    assert kfp_adapter.local_task_parameters(run, "answer") == {"changed": False, "reason": "nothing new"}
    assert kfp_adapter.local_task_parameters(run, "never-ran") is None
    assert kfp_adapter.local_task_artifact(run, "answer", "why").read_text() == "because"
