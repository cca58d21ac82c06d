"""The weight sources: native formats through the adapters, unsafe and bad files, the store, fetch, CLI."""

from __future__ import annotations

import functools
import http.server
import io
import logging
import os
import pickle
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from refusal import refused

from cxrtl.cli import main
from cxrtl.errors import CxrtlError
from cxrtl.store import LocalStore
from cxrtl.store.base import sha256_file
from cxrtl.weights import (
    MIRROR_ENV,
    SOURCE_NAMES,
    SOURCES,
    check_checkpoint,
    fetch_weights,
    get_source,
    list_weights,
    load_backbone_state_dict,
    put_weights,
    resolve_weights,
    stand_in_backbone,
    verify_weights,
    write_stand_in,
)
from cxrtl.weights.adapters import FormatMismatch, adapt, backbone_spec
from cxrtl.weights.safe_load import load_checkpoint

# What the published files contain (STUDY.md, and the loaders in the sources' own repositories):
# top-level keys, and head tensors with their shapes, as named in the file.
NATIVE = {
    "torchvision": (None, {"fc.weight": (1000, 2048), "fc.bias": (1000,)}),
    "zenodo-cxr": (
        {"epoch", "lossMIN", "state_dict", "optimizer", "scheduler"},
        {"module.fc.0.weight": (14, 2048), "module.fc.0.bias": (14,)},
    ),
    "inat-supervised": (
        {"epoch", "arch", "state_dict", "best_acc1", "optimizer"},
        {"fc.weight": (10000, 2048), "fc.bias": (10000,)},
    ),
    "swav": (
        {"epoch", "state_dict", "optimizer", "amp"},
        {"module.projection_head.0.weight": (2048, 2048), "module.prototypes.weight": (3000, 128)},
    ),
    "moco-v1": (
        {"state_dict", "arch", "epoch"},
        {"module.encoder_q.fc.weight": (128, 2048), "module.encoder_k.fc.weight": (128, 2048)},
    ),
    "moco-v2": (
        {"state_dict", "arch", "epoch"},
        {
            "module.encoder_q.fc.0.weight": (2048, 2048),
            "module.encoder_q.fc.2.weight": (128, 2048),
            "module.encoder_k.fc.2.weight": (128, 2048),
        },
    ),
}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """One stand-in per source for the whole module, written on first use."""
    folder = tmp_path_factory.mktemp("stand-ins")

    @functools.cache
    def get(source: str) -> Path:
        return write_stand_in(source, folder / get_source(source).file_name)

    return get


@pytest.fixture(scope="module")
def expected() -> Callable[[str], dict[str, torch.Tensor]]:
    return functools.cache(stand_in_backbone)


def _one_line_error(call: Callable[[], object]) -> str:
    with pytest.raises(CxrtlError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- registry -------------------------------------------------------------------------------


def test_registry_covers_the_ten_sources_with_a_way_to_get_each():
    assert set(SOURCES) == set(SOURCE_NAMES) and len(SOURCE_NAMES) == 10
    for source in SOURCES.values():
        assert (source.url is None) != (source.manual_instructions is None), source.name
        if source.url:
            assert source.file_name in source.url
        metrics = source.published
        assert all(0.75 < v < 1 for v in (metrics.accuracy, metrics.precision, metrics.sensitivity, metrics.f1))
    imagenet = get_source("imagenet")
    assert imagenet.file_name == f"resnet50-{imagenet.sha256}.pth"
    assert imagenet.published_matches(Path("unread"), "0676ba61" + "0" * 56)
    assert not imagenet.published_matches(Path("unread"), "f" * 64)
    assert get_source("chexpert").published_matches(Path("unread"), "0" * 64) is None
    assert get_source("inat2021-mini-swav-1k").published.accuracy == 0.9917
    assert get_source("moco-v2").published.specificity == 0.7890


def test_unknown_source_names_the_valid_ones(tmp_path):
    message = _one_line_error(lambda: get_source("resnet50"))
    assert "'resnet50'" in message and "chexpert" in message and "moco-v2" in message
    _one_line_error(lambda: load_backbone_state_dict("resnet50", tmp_path / "x.pth"))


# --- each source's native format, through its adapter ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_stand_in_has_the_native_format_and_loads_back_bit_identical(source, stand_in, expected):
    path = stand_in(source)
    top_keys, heads = NATIVE[get_source(source).format.name]
    contents = load_checkpoint(path)
    state = contents if top_keys is None else contents["state_dict"]
    if top_keys is not None:
        assert set(contents) == top_keys
    for name, shape in heads.items():
        assert tuple(state[name].shape) == shape, name

    loaded = load_backbone_state_dict(source, path)

    want = expected(source)
    assert list(loaded) == list(want) == list(backbone_spec())
    assert not any(name.startswith("fc.") for name in loaded)
    for name, tensor in want.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    model = torchvision.models.resnet50()
    result = model.load_state_dict(loaded, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys


def test_stand_ins_are_deterministic_per_seed_and_leave_the_global_rng_alone(tmp_path, stand_in):
    torch.manual_seed(5)
    before = torch.rand(3)
    again = write_stand_in("imagenet", tmp_path / "again.pth", seed=0)
    other = write_stand_in("imagenet", tmp_path / "other.pth", seed=1)
    torch.manual_seed(5)
    stand_in_backbone("moco-v1", seed=0)
    assert torch.equal(torch.rand(3), before)
    assert sha256_file(again) == sha256_file(stand_in("imagenet"))
    assert sha256_file(other) != sha256_file(again)
    assert not torch.equal(stand_in_backbone("chexpert")["conv1.weight"], stand_in_backbone("moco-v1")["conv1.weight"])


@pytest.mark.parametrize("source", ["inat2021-supervised", "moco-v2"])  # the largest head; two encoders
def test_a_stand_in_is_small_on_disk(source, stand_in):
    # The demo's disk use rests on this: ten stand-ins of full-size independent tensors were 1.4 GB.
    assert stand_in(source).stat().st_size < 12_000_000


def test_moco_adapter_takes_the_query_encoder_not_the_key_encoder(stand_in, expected):
    state = load_checkpoint(stand_in("moco-v2"))["state_dict"]
    assert not torch.equal(state["module.encoder_k.conv1.weight"], state["module.encoder_q.conv1.weight"])
    loaded = load_backbone_state_dict("moco-v2", stand_in("moco-v2"))
    assert torch.equal(loaded["conv1.weight"], state["module.encoder_q.conv1.weight"])


# --- adapter rules on in-memory variants of a real-size checkpoint --------------------------


@pytest.fixture(scope="module")
def zenodo_contents(stand_in) -> dict:
    return load_checkpoint(stand_in("chexpert"))


def _with_state(contents: dict, state: dict) -> dict:
    return {**contents, "state_dict": state}


def test_optional_module_prefix_may_be_absent_but_not_mixed(zenodo_contents):
    fmt = get_source("chexpert").format
    bare = {k.removeprefix("module."): v for k, v in zenodo_contents["state_dict"].items()}
    backbone, prefix, dropped, _ = adapt(fmt, _with_state(zenodo_contents, bare))
    assert prefix == "" and len(backbone) == len(backbone_spec()) and dropped == ("fc.0.weight", "fc.0.bias")

    mixed = dict(zenodo_contents["state_dict"])
    mixed["conv1.weight"] = mixed.pop("module.conv1.weight")
    with pytest.raises(FormatMismatch, match="mix the prefixes"):
        adapt(fmt, _with_state(zenodo_contents, mixed))


def test_head_patterns_are_anchored_at_the_key_start(zenodo_contents):
    # The study dropped every key containing "fc"; a stray fc-named tensor inside the backbone must not vanish.
    state = dict(zenodo_contents["state_dict"])
    state["module.layer4.0.fc.weight"] = torch.zeros(3)
    with pytest.raises(FormatMismatch, match=r"1 unexpected keys \(module.layer4.0.fc.weight\)"):
        adapt(get_source("chexpert").format, _with_state(zenodo_contents, state))


def test_missing_and_misshaped_tensors_are_named(zenodo_contents):
    state = dict(zenodo_contents["state_dict"])
    del state["module.layer3.2.bn2.running_var"]
    state["module.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(FormatMismatch) as info:
        adapt(get_source("chexpert").format, _with_state(zenodo_contents, state))
    message = str(info.value)
    assert "1 of 318 backbone tensors missing (layer3.2.bn2.running_var)" in message
    assert "conv1.weight (64, 3, 3, 3) instead of (64, 3, 7, 7)" in message


def test_checkpoints_without_any_num_batches_tracked_get_zeros(tmp_path, zenodo_contents, expected):
    legacy = {k: v for k, v in zenodo_contents["state_dict"].items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "legacy.pth.tar"
    torch.save(_with_state(zenodo_contents, legacy), path)
    check = check_checkpoint("chexpert", path)
    assert len(check.filled) == 53 and "53 set to 0" in check.summary()
    assert all(check.state_dict[name].item() == 0 for name in check.filled)
    assert torch.equal(check.state_dict["conv1.weight"], expected("chexpert")["conv1.weight"])

    partial = dict(zenodo_contents["state_dict"])
    del partial["module.bn1.num_batches_tracked"]
    with pytest.raises(FormatMismatch, match=r"missing \(bn1.num_batches_tracked\)"):
        adapt(get_source("chexpert").format, _with_state(zenodo_contents, partial))


# --- files that must be refused -------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "ran"
    # The payload is live: unpickled normally, it does create the marker.
    pickle.loads(pickle.dumps(_RunsCode(tmp_path / "live")))
    assert (tmp_path / "live").exists()

    path = tmp_path / "evil.pth.tar"
    payload = {"state_dict": {"conv1.weight": _RunsCode(marker)}}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    message = _one_line_error(lambda: load_backbone_state_dict("chexpert", path))
    assert "refused" in message and "system" in message and "nothing in it was run" in message
    assert not marker.exists()


def test_truncated_and_random_files_are_refused(tmp_path, stand_in):
    data = stand_in("chexpert").read_bytes()
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(data[: len(data) // 2])
    assert "not a readable PyTorch checkpoint" in _one_line_error(
        lambda: load_backbone_state_dict("chexpert", truncated)
    )

    noise = tmp_path / "noise.pth.tar"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert str(noise) in _one_line_error(lambda: load_backbone_state_dict("chexpert", noise))

    assert "no such file" in _one_line_error(lambda: load_backbone_state_dict("chexpert", tmp_path / "absent"))


def test_a_moco_file_given_as_chexpert_is_refused_with_a_hint(stand_in):
    path = stand_in("moco-v1")
    message = _one_line_error(lambda: load_backbone_state_dict("chexpert", path))
    assert f"{path}: not a chexpert checkpoint" in message
    assert "318 of 318 backbone tensors missing (conv1.weight, bn1.weight, bn1.bias, ...)" in message
    assert "unexpected keys (module.encoder_q.conv1.weight" in message
    assert message.endswith("it fits the format of: moco-v1, moco-v2")


def test_a_torchvision_file_given_as_a_wrapped_format_is_refused(stand_in):
    message = _one_line_error(lambda: load_backbone_state_dict("inat2021-mini-swav-1k", stand_in("imagenet")))
    assert "expected a dict with a 'state_dict' entry, found a dict with keys conv1.weight" in message
    assert message.endswith("it fits the format of: imagenet")


def test_numpy_scalars_are_allowed_under_both_numpy_module_names(tmp_path):
    buffer = io.BytesIO()
    torch.save({"lossMIN": np.float64(0.25), "epoch": np.int64(7), "w": torch.ones(2)}, buffer)
    path = tmp_path / "numpy2.pt"
    path.write_bytes(buffer.getvalue())
    assert load_checkpoint(path)["lossMIN"] == 0.25

    # A file written under numpy 1 names the scalar function numpy.core.multiarray.scalar.
    old = tmp_path / "numpy1.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(old, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(name, data)
    assert load_checkpoint(old)["epoch"] == 7


# --- the store ------------------------------------------------------------------------------


def test_put_resolve_list_verify_round_trip(tmp_path, stand_in, expected):
    store = LocalStore(tmp_path / "store")
    file = stand_in("chexpert")
    digest = sha256_file(file)

    stored = put_weights(store, "chexpert", file, stand_in=True)
    assert (stored.sha256, stored.key, stored.stand_in, stored.tensors) == (
        digest,
        f"weights/chexpert/{digest}.pth",
        True,
        318,
    )
    record = store.get_json(f"weights/chexpert/{digest}.json")
    assert record["source"] == "chexpert" and record["file_name"] == "chexpert.pth.tar"
    assert record["stand_in"] is True and record["sha256_check"] == "stand-in" and record["tensors"] == 318
    assert store.get_json("weights/chexpert/current.json")["sha256"] == digest

    cache = tmp_path / "cache"
    resolved = resolve_weights(store, "chexpert", cache)
    assert resolved.path == cache / "chexpert" / f"{digest}.pth" and sha256_file(resolved.path) == digest
    assert resolved.stand_in and resolved.key == stored.key
    stamp = resolved.path.stat().st_mtime_ns
    assert resolve_weights(store, "chexpert", cache).path.stat().st_mtime_ns == stamp  # reused
    resolved.path.write_bytes(b"damaged")
    assert sha256_file(resolve_weights(store, "chexpert", cache).path) == digest  # fetched again
    loaded = load_backbone_state_dict("chexpert", resolved.path)
    assert torch.equal(loaded["layer4.2.conv3.weight"], expected("chexpert")["layer4.2.conv3.weight"])

    rows = {row.source: row for row in list_weights(store)}
    assert rows["chexpert"].stored and rows["chexpert"].stand_in and rows["chexpert"].verified
    assert not rows["moco-v1"].stored and rows["moco-v1"].sha256 is None

    assert [(r.source, r.ok) for r in verify_weights(store)] == [("chexpert", True)]
    stored_file = tmp_path / "store" / "weights" / "chexpert" / f"{digest}.pth"
    with open(stored_file, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    [result] = verify_weights(store)
    assert not result.ok and "sha256" in result.detail
    assert {row.source: row for row in list_weights(store)}["chexpert"].verified is False


def test_resolving_a_source_with_nothing_stored_says_what_to_run(tmp_path):
    message = _one_line_error(lambda: resolve_weights(LocalStore(tmp_path), "moco-v1", tmp_path / "cache"))
    assert "cxrtl weights fetch moco-v1" in message and "cxrtl weights put moco-v1 FILE" in message
    assert "stand-in" in message


def test_a_sha256_other_than_the_published_one_is_refused_unless_allowed(tmp_path, stand_in, caplog):
    store = LocalStore(tmp_path / "store")
    file = stand_in("imagenet")  # a stand-in cannot have torchvision's sha256
    message = _one_line_error(lambda: put_weights(store, "imagenet", file))
    assert "does not have the published sha256 0676ba61..." in message and "--allow-sha-mismatch" in message
    assert store.list("weights/") == []

    with caplog.at_level(logging.WARNING, logger="cxrtl.weights.stored"):
        stored = put_weights(store, "imagenet", file, allow_sha_mismatch=True)
    assert any("--allow-sha-mismatch" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert store.get_json(f"weights/imagenet/{stored.sha256}.json")["sha256_check"] == "mismatch-allowed"
    assert not stored.stand_in


def test_put_refuses_a_file_of_another_source(tmp_path, stand_in):
    store = LocalStore(tmp_path / "store")
    _one_line_error(lambda: put_weights(store, "chexpert", stand_in("moco-v2")))
    assert store.list() == []


# --- fetch ----------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder; under /broken/ it promises the whole file and sends half."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.startswith("/broken/"):
            super().do_GET()
            return
        data = (Path(self.directory) / self.path.removeprefix("/broken/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, stand_in) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mirror")
    for source in ("chexpert", "imagenet", "inat2021-supervised"):
        os.symlink(stand_in(source), folder / get_source(source).file_name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_fetch_downloads_checks_and_stores(tmp_path, mirror, stand_in, caplog, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    store = LocalStore(tmp_path / "store")
    work = tmp_path / "work"
    with caplog.at_level(logging.INFO, logger="cxrtl.weights.download"):
        results = fetch_weights(store, ["chexpert", "inat2021-supervised", "imagenet"], mirror=mirror, work_dir=work)
    by_source = {r.source: r for r in results}
    assert by_source["chexpert"].status == "stored"
    assert by_source["chexpert"].stored.sha256 == sha256_file(stand_in("chexpert"))
    assert by_source["inat2021-supervised"].status == "stored"  # a manual source, but the mirror has it
    assert by_source["imagenet"].status == "failed" and "0676ba61" in by_source["imagenet"].detail
    assert any("(100%)" in r.getMessage() for r in caplog.records)
    assert store.list("weights/imagenet/") == []
    assert _files_under(work) == []
    record = store.get_json(f"weights/chexpert/{by_source['chexpert'].stored.sha256}.json")
    assert record["stand_in"] is False and record["sha256_check"] == "not-published"

    [again] = fetch_weights(store, ["chexpert"], mirror=mirror, work_dir=work)
    assert again.status == "present"


def test_fetch_of_a_manual_source_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    [result] = fetch_weights(LocalStore(tmp_path), ["inat2021-mini-swav-1k"])
    assert result.status == "manual"
    assert "cornell.box.com" in result.detail
    assert "cxrtl weights put inat2021-mini-swav-1k PATH/inat2021_swav_mini_1000_ep.pth" in result.detail


def test_an_interrupted_download_leaves_nothing(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, f"{mirror}/broken")
    store = LocalStore(tmp_path / "store")
    work = tmp_path / "work"
    [result] = fetch_weights(store, ["chexpert"], work_dir=work)
    assert result.status == "failed" and "incomplete" in result.detail
    assert store.list() == [] and _files_under(work) == []
    _one_line_error(lambda: resolve_weights(store, "chexpert", tmp_path / "cache"))

    [missing] = fetch_weights(store, ["chestx-ray14"], mirror=mirror, work_dir=work)
    assert missing.status == "failed" and "404" in missing.detail and _files_under(work) == []


# --- the CLI --------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_exit_codes(tmp_path, stand_in, mirror, capsys):
    store = str(tmp_path / "store")
    chexpert, moco = str(stand_in("chexpert")), str(stand_in("moco-v1"))

    assert main(["weights", "check", "chexpert", chexpert]) == 0
    assert "all 318 backbone tensors matched" in capsys.readouterr().out
    refused(capsys, ["weights", "check", "chexpert", moco], naming=[moco])
    refused(capsys, ["weights", "check", "resnet", chexpert], naming=["'resnet'"])

    assert main(["weights", "--store", store, "put", "chexpert", chexpert, "--stand-in"]) == 0
    imagenet = str(stand_in("imagenet"))
    refused(
        capsys,
        ["weights", "put", "imagenet", imagenet, "--store", store],
        naming=[imagenet, "--allow-sha-mismatch"],
        nothing_at=[tmp_path / "store" / "weights" / "imagenet"],
    )
    assert (
        main(["weights", "put", "imagenet", str(stand_in("imagenet")), "--store", store, "--allow-sha-mismatch"]) == 0
    )
    capsys.readouterr()
    assert main(["weights", "list", "--store", store]) == 0
    table = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert table["chexpert"][2] == "yes" and table["chexpert"][-1] == "yes"
    assert table["moco-v1"][2] == "no"

    assert main(["weights", "verify", "--store", store]) == 0
    assert main(["weights", "fetch", "--store", store, "--mirror", mirror, "inat2021-supervised"]) == 0
    assert main(["weights", "fetch", "--store", store, "--mirror", f"{mirror}/broken", "chexpert"]) == 2

    out = tmp_path / "si" / "moco.pth.tar"
    assert main(["weights", "stand-in", "moco-v1", str(out), "--seed", "3"]) == 0
    assert load_backbone_state_dict("moco-v1", out).keys() == backbone_spec().keys()

    stored = next((tmp_path / "store" / "weights" / "inat2021-supervised").glob("*.pth"))
    shutil.copyfile(chexpert, stored)
    capsys.readouterr()
    assert main(["weights", "verify", "--store", store]) == 2
    assert "1 of 3 stored weight files failed verification" in capsys.readouterr().err
