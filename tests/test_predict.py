"""``cxrtl predict``: evaluate's probabilities for the same images, from PNG and from DICOM; bad inputs refused."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from champion_models import stored_model
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from components.images import CPU, image
from cxrtl import RESEARCH_ONLY, champion
from cxrtl.champion import MODEL_FILES
from cxrtl.cli import main
from cxrtl.evaluate import PREDICTIONS_FILE, evaluate
from cxrtl.ingest import find_dataset
from cxrtl.predict import PROGRESS_FROM, folder_model, predict_images
from cxrtl.preprocess import to_gray8
from cxrtl.promote import promote
from cxrtl.recipes import TrainConfig
from cxrtl.store import LocalStore, keys, open_store, sha256_file
from cxrtl.train import METADATA_FILE, MODEL_FILE, train

pytestmark = pytest.mark.slow  # the tests share a model trained for them

RUN_ID = "test-predict"
ROOT = Path(__file__).resolve().parents[1]
# A few test images keep the DICOM copies cheap; evaluate's batch holds them all, as predict's does.
N_IMAGES = 4


@dataclass
class Trained:
    model_dir: Path
    images: list[Path]  # evaluate's test images, in its order
    evaluated: dict[str, str]  # image id: covid_probability as predictions.csv writes it
    ids: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stand_in_store, prepared) -> Iterator[Trained]:
    """One epoch of the recommended recipe (ImageNet normalisation, a validation threshold), evaluated."""
    root = tmp_path_factory.mktemp("predict")
    config = TrainConfig.from_recipe("recommended", epochs=1, batch_size=16, device="cpu")
    train(prepared["recommended"], "imagenet", root / "model", config, stand_in_store, RUN_ID)
    evaluate(prepared["recommended"], root / "model", root / "eval", device="cpu")
    with open(root / "eval" / PREDICTIONS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    raw = find_dataset(prepared["recommended"].parent / "raw", "raw")
    ids = [row["id"] for row in rows]
    yield Trained(root / "model", [raw / i for i in ids], {r["id"]: r["covid_probability"] for r in rows}, ids)
    for key in stand_in_store.list(f"runs/{RUN_ID}/") + stand_in_store.list(f"models/imagenet/{RUN_ID}/"):
        stand_in_store.delete(key)
    shutil.rmtree(root)


def _predict(args: list[str], capsys) -> tuple[int, list[dict[str, str]], str]:
    code = main(["predict", *args])
    err = capsys.readouterr().err
    out = Path(args[args.index("--out") + 1]) / "predictions.csv"
    with open(out, newline="") as f:
        return code, list(csv.DictReader(f)), err


def test_predict_reproduces_evaluate_bit_for_bit(trained: Trained, tmp_path: Path, capsys):
    code, rows, _ = _predict(
        [
            "--model",
            str(trained.model_dir),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *map(str, trained.images),
        ],
        capsys,
    )
    assert code == 0
    assert [r["file"] for r in rows] == [str(p) for p in trained.images]
    assert [r["covid_probability"] for r in rows] == [trained.evaluated[i] for i in trained.ids]
    sha256 = sha256_file(trained.model_dir / MODEL_FILE)
    assert {r["model_sha256"] for r in rows} == {sha256}
    threshold = float(rows[0]["threshold"])
    assert threshold != 0.5  # the recommended recipe's validation threshold, not evaluate's 0.5
    for r in rows:
        assert r["decision"] == ("COVID" if float(r["covid_probability"]) >= threshold else "Normal")
    page = (tmp_path / "out" / "predictions.html").read_text()
    assert page.index(RESEARCH_ONLY) < page.index("<table>")  # the banner first
    assert all(f"<td>{p}</td>" in page for p in trained.images) and sha256 in page
    assert not re.search(r"<(link|script)\b|\bsrc=", page)  # self-contained, for the KFP UI's sandbox


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str, bits: int, rescale: tuple[float, float] | None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _gray(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(to_gray8(image)).astype(np.int64)


# name: (photometric, bits, rescale, stored pixels from the 8-bit grey values)
DICOM_KINDS = {
    "mono2-8bit": ("MONOCHROME2", 8, None, lambda g: g),
    "mono2-16bit-rescaled": ("MONOCHROME2", 16, (2.0, -1024.0), lambda g: g * 257),
    "mono1-8bit": ("MONOCHROME1", 8, None, lambda g: 255 - g),
}


@pytest.mark.parametrize("kind", DICOM_KINDS)
def test_dicom_copies_give_the_same_probabilities(trained: Trained, tmp_path: Path, capsys, kind: str):
    photometric, bits, rescale, stored = DICOM_KINDS[kind]
    images = trained.images[:N_IMAGES]
    folder = tmp_path / "dicom"
    folder.mkdir()
    for n, png in enumerate(images):
        _write_dicom(folder / f"{n:02d}.dcm", stored(_gray(png)), photometric, bits, rescale)
    model = ["--model", str(trained.model_dir), "--device", "cpu"]
    code, from_dicom, _ = _predict([*model, "--out", str(tmp_path / "dicom-out"), str(folder)], capsys)
    _, from_png, _ = _predict([*model, "--out", str(tmp_path / "png-out"), *map(str, images)], capsys)
    assert code == 0
    assert [r["file"] for r in from_dicom] == [str(folder / f"{n:02d}.dcm") for n in range(len(images))]
    assert [r["covid_probability"] for r in from_dicom] == [r["covid_probability"] for r in from_png]


def test_bad_inputs_are_refused_in_one_line_each(trained: Trained, tmp_path: Path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    compressed = tmp_path / "compressed.dcm"
    _write_dicom(compressed, _gray(trained.images[0]), "MONOCHROME2", 8, None)
    ds = pydicom.dcmread(compressed)
    # High-throughput JPEG 2000: no decoder installed here (pylibjpeg-openjpeg would be one)
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(compressed, enforce_file_format=True)
    missing = tmp_path / "missing.png"
    args = ["--model", str(trained.model_dir), "--device", "cpu", "--out", str(tmp_path / "out")]
    code, rows, err = _predict([*args, str(text), str(compressed), str(missing), str(trained.images[0])], capsys)
    assert code == 1
    assert [r["file"] for r in rows] == [str(trained.images[0])]
    lines = [line for line in err.splitlines() if "refused" in line]
    assert len(lines) == 3, err
    assert str(text) in lines[0] and "not a readable PNG, JPEG or DICOM image" in lines[0]
    assert str(compressed) in lines[1] and "High-Throughput JPEG 2000" in lines[1] and HTJ2KLossless in lines[1]
    assert str(missing) in lines[2] and "no such file" in lines[2]
    assert "Traceback" not in err


def test_a_runs_model_from_the_store_and_no_champion(trained: Trained, stand_in_store, tmp_path: Path, capsys):
    store = ["--store", stand_in_store.url, "--device", "cpu"]
    images = list(map(str, trained.images))  # all of them: a batch of other images may round differently
    code, rows, _ = _predict(
        [*store, "--run-id", RUN_ID, "--source", "imagenet", "--out", str(tmp_path / "run"), *images], capsys
    )
    assert code == 0
    assert [r["covid_probability"] for r in rows] == [trained.evaluated[i] for i in trained.ids]
    assert rows[0]["model"] == f"imagenet from run {RUN_ID}"
    assert rows[0]["model_sha256"] == sha256_file(trained.model_dir / MODEL_FILE)
    assert main(["predict", *store, "--out", str(tmp_path / "champion"), images[0]]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"cxrtl: error: no champion in {stand_in_store.url}; give --run-id and --source, or --model"
    )
    assert not (tmp_path / "champion").exists()


def test_the_champion_is_the_default_and_checked_against_its_pointer(
    trained: Trained, prepared, tmp_path: Path, capsys
):
    """The trained model's files promoted as a clearly good model (tests/champion_models.py: no floor to clear)."""
    store = LocalStore(tmp_path / "store")
    evaluation = stored_model(store, "champ-run")
    for name in MODEL_FILES:
        store.put_file(keys.model_key("imagenet", "champ-run", name), trained.model_dir / name)
    assert promote(store, prepared["recommended"], [evaluation]).promoted
    images = list(map(str, trained.images))
    code, rows, _ = _predict(["--store", store.url, "--device", "cpu", "--out", str(tmp_path / "out"), *images], capsys)
    assert code == 0
    assert [r["covid_probability"] for r in rows] == [trained.evaluated[i] for i in trained.ids]
    assert rows[0]["model"] == "champion imagenet from run champ-run"
    current = champion.current(store)
    # The champion's model.pt changed since its promotion: refused before use, nothing written.
    store.put_bytes(current.key(MODEL_FILE), b"not the champion's model")
    assert main(["predict", "--store", store.url, "--out", str(tmp_path / "changed"), images[0]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cxrtl: error:") and "sha256" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "changed").exists()


def test_gradcam_overlays_one_per_image(trained: Trained, tmp_path: Path, capsys):
    images = trained.images[:2]
    args = ["--model", str(trained.model_dir), "--device", "cpu", "--gradcam", "--out", str(tmp_path / "out")]
    code, rows, _ = _predict([*args, *map(str, images)], capsys)
    assert code == 0 and len(rows) == 2
    size = json.loads((trained.model_dir / METADATA_FILE).read_text())["image_size"]
    overlays = sorted((tmp_path / "out" / "gradcam").iterdir())
    assert [p.name for p in overlays] == [f"{n:04d}-{p.stem}.png" for n, p in enumerate(images)]
    for path in overlays:
        with Image.open(path) as overlay:
            assert overlay.mode == "RGB" and overlay.size == (size, size)
            # A heat map over grey: some pixels are coloured.
            pixels = np.asarray(overlay).astype(int)
            assert np.ptp(pixels, axis=2).max() > 0


def test_a_zip_gives_the_files_probabilities_and_no_images_is_a_mistake(trained: Trained, tmp_path: Path, capsys):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n, path in enumerate(trained.images):  # numbered: the zip is read in name order, as evaluate's
            z.write(path, f"{n:02d}-{path.name}")
    model = ["--model", str(trained.model_dir), "--device", "cpu"]
    code, rows, _ = _predict([*model, "--out", str(tmp_path / "out"), str(archive)], capsys)
    assert code == 0
    assert [r["file"] for r in rows] == [f"{archive}!{n:02d}-{p.name}" for n, p in enumerate(trained.images)]
    assert [r["covid_probability"] for r in rows] == [trained.evaluated[i] for i in trained.ids]
    (tmp_path / "empty").mkdir()
    assert main(["predict", *model, "--out", str(tmp_path / "none"), str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith(
        f"cxrtl: error: no images (.dcm, .dicom, .jpeg, .jpg, .png) in {tmp_path}"
    )
    assert not (tmp_path / "none").exists()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def served(trained: Trained, tmp_path_factory) -> Iterator[str]:
    """``cxrtl serve`` of the trained model as its own process on a free loopback port: its /v2 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    argv = [sys.executable, "-m", "cxrtl", "serve", "--model", str(trained.model_dir), "--device", "cpu"]
    with open(log, "wb") as out:
        server = subprocess.Popen([*argv, "--http-port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v2"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"cxrtl serve exited {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"cxrtl serve not ready in 120 s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/models/cxrtl/ready", timeout=5) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_serve_answers_a_v2_request_with_evaluates_probabilities(trained: Trained, served: str):
    images = [base64.b64encode(p.read_bytes()).decode() for p in trained.images]
    body = {"id": "r1", "inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": images}]}
    status, answer = _post(f"{served}/models/cxrtl/infer", body)
    assert status == 200, answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    probabilities = outputs["covid_probability"]["data"]
    assert [repr(p) for p in probabilities] == [trained.evaluated[i] for i in trained.ids]  # bit for bit
    threshold = answer["parameters"]["threshold"]
    assert outputs["decision"]["data"] == ["COVID" if p >= threshold else "Normal" for p in probabilities]
    assert answer["parameters"]["model_sha256"] == sha256_file(trained.model_dir / MODEL_FILE)
    assert answer["id"] == "r1" and "not a medical device" in answer["parameters"]["note"]
    assert outputs["flags"]["data"] == [""] * len(images)  # the demo's images are plausible radiographs


def test_serve_refuses_an_unreadable_image_naming_it(served: str):
    data = [base64.b64encode(b"not an image").decode()]
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": data}]}
    status, answer = _post(f"{served}/models/cxrtl/infer", body)
    assert status == 400 and "image[0]: not a readable PNG, JPEG or DICOM image" in answer["error"]
    status, answer = _post(f"{served}/models/cxrtl/infer", {"inputs": [{**body["inputs"][0], "name": "x"}]})
    assert status == 400 and "expected one BYTES input named 'image'" in answer["error"]


def test_implausible_images_are_predicted_and_flagged_with_the_rule_they_break(
    trained: Trained, tmp_path: Path, capsys
):
    gray = _gray(trained.images[0]).astype(np.uint8)
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(tmp_path / "grey-in-rgb.png")  # equal channels
    Image.fromarray(gray).resize((64, 64)).save(tmp_path / "tiny.png")
    Image.fromarray(gray).resize((600, 200)).save(tmp_path / "wide.png")
    photo = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    _write_dicom(tmp_path / "ct.dcm", gray, "MONOCHROME2", 8, None)
    ct = pydicom.dcmread(tmp_path / "ct.dcm")
    ct.Modality, ct.ViewPosition = "CT", "LL"
    ct.save_as(tmp_path / "ct.dcm")
    names = ["grey-in-rgb.png", "tiny.png", "wide.png", "photo.jpg", "ct.dcm"]
    args = ["--model", str(trained.model_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]
    code, rows, _ = _predict([*args, *(str(tmp_path / n) for n in names)], capsys)
    assert code == 0  # flagged, not refused: each still has its probability
    flags = {Path(r["file"]).name: r["flags"] for r in rows}
    assert flags["grey-in-rgb.png"] == ""
    assert flags["tiny.png"] == "smaller than 128 px (64x64)"
    assert flags["wide.png"] == "aspect ratio beyond 2:1 (600x200)"
    assert flags["photo.jpg"].startswith("a colour picture (channels differ by ")
    assert flags["ct.dcm"] == "DICOM modality CT, not CR or DX; DICOM view position LL (lateral)"
    assert all(0 <= float(r["covid_probability"]) <= 1 for r in rows)


def test_images_under_an_s3_prefix_are_read_from_the_bucket(trained: Trained, s3_env: str, tmp_path: Path, capsys):
    prefix = f"{s3_env}/incoming"
    uploads = open_store(prefix)
    for path in trained.images:
        uploads.put_file(f"batch-1/{path.name}", path)
    uploads.put_bytes("batch-1/notes.txt", b"not an image, not listed")
    args = ["--model", str(trained.model_dir), "--out", str(tmp_path / "out"), "--device", "cpu", prefix]
    code, rows, _ = _predict(args, capsys)
    assert code == 0
    assert [r["file"] for r in rows] == sorted(f"{prefix}/batch-1/{p.name}" for p in trained.images)
    by_name = {Path(r["file"]).name: r["covid_probability"] for r in rows}
    # The same images as from files; evaluate's order is another, so the batch's float rounding may differ.
    for path, image_id in zip(trained.images, trained.ids, strict=True):
        assert float(by_name[path.name]) == pytest.approx(float(trained.evaluated[image_id]), abs=1e-6)


# --- predict_pipeline.py: the same on a cluster, compiled, and run through kfp.local against S3 (moto: promotion's
# compare-and-swap needs its conditional writes) -------------------------------------------------------------


def test_the_compiled_pipeline_runs_predict_on_the_cpu_image_with_the_store_settings(tmp_path: Path):
    out = tmp_path / "predict.yaml"
    done = subprocess.run(
        [sys.executable, "predict_pipeline.py", "compile", "-o", str(out), "--minio-secret", "my-minio"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["images"]["parameterType"] == "STRING"
    assert "defaultValue" not in spec["root"]["inputDefinitions"]["parameters"]["images"]  # must be given
    [executor] = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == image(CPU)
    outputs = spec["components"]["comp-predict"]["outputDefinitions"]["artifacts"]
    assert outputs["page"]["artifactType"]["schemaTitle"] == "system.HTML"
    [task] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    assert task["secretAsEnv"][0]["secretName"] == "my-minio"
    assert task["configMapAsEnv"][0]["configMapName"] == "cxrtl-config"


def test_a_local_run_predicts_every_image_under_the_prefix_and_keeps_the_outputs_in_the_store(
    trained: Trained,
    prepared,
    moto_env: str,
    tmp_path: Path,
):
    store = open_store(moto_env)
    evaluation = stored_model(store, "champ-run")
    for name in MODEL_FILES:
        store.put_file(keys.model_key("imagenet", "champ-run", name), trained.model_dir / name)
    assert promote(store, prepared["recommended"], [evaluation]).promoted
    for path in trained.images:
        store.put_file(f"incoming/{path.name}", path)
    script = (
        "from kfp import local; from predict_pipeline import build_predict_pipeline; "
        f"local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(tmp_path / 'root')!r}); "
        f"build_predict_pipeline()(images={moto_env + '/incoming'!r}, store={moto_env!r})"
    )
    # TMPDIR: kfp.local leaves its workspace and each task's code folder there.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [kept] = [k for k in store.list("predictions/") if k.endswith("/predictions.csv")]
    assert store.exists(kept.replace("predictions.csv", "predictions.html"))
    rows = list(csv.DictReader(io.StringIO(store.get_bytes(kept).decode())))
    by_name = {Path(r["file"]).name: r for r in rows}
    assert sorted(by_name) == sorted(p.name for p in trained.images)
    assert {r["model"] for r in rows} == {"champion imagenet from run champ-run"}
    for path, image_id in zip(trained.images, trained.ids, strict=True):
        assert float(by_name[path.name]["covid_probability"]) == pytest.approx(
            float(trained.evaluated[image_id]), abs=1e-6
        )


def test_a_long_prediction_shows_its_progress(trained: Trained, tmp_path: Path, caplog):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(PROGRESS_FROM):
        shutil.copy(trained.images[0], folder / f"copy-{i:03d}.png")
    model = folder_model(trained.model_dir)
    with caplog.at_level("INFO", logger="cxrtl.predict"):
        predict_images(model, [folder], tmp_path / "out", device="cpu")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predicting: ")]
    assert lines[-1] == f"predicting: {PROGRESS_FROM} of {PROGRESS_FROM} images (100%)"  # not a terminal: lines


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` in its IHDR chunk, with an empty IDAT: no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_a_truncated_dicom_and_a_huge_declared_image_are_refused_in_one_line_each(
    trained: Trained, tmp_path: Path, capsys
):
    truncated = tmp_path / "truncated.dcm"
    _write_dicom(truncated, _gray(trained.images[0]), "MONOCHROME2", 16, None)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(100_000, 100_000))  # 10^10 pixels: never decoded
    args = ["--model", str(trained.model_dir), "--device", "cpu", "--out", str(tmp_path / "out")]
    code, rows, err = _predict([*args, str(truncated), str(huge), str(trained.images[0])], capsys)
    assert code == 1 and [r["file"] for r in rows] == [str(trained.images[0])]
    lines = [line for line in err.splitlines() if "refused" in line]
    assert len(lines) == 2 and "Traceback" not in err, err
    assert str(truncated) in lines[0] and "DICOM" in lines[0]
    assert str(huge) in lines[1] and "DecompressionBombError" in lines[1]


def test_an_rle_compressed_copy_gives_the_same_probabilities_and_jpeg_decoders_are_installed(
    trained: Trained, tmp_path: Path, capsys
):
    images = trained.images[:N_IMAGES]
    copies = []
    for i, path in enumerate(images):
        copy = tmp_path / f"{i}.dcm"
        _write_dicom(copy, _gray(path), "MONOCHROME2", 8, None)
        ds = pydicom.dcmread(copy)
        ds.compress(RLELossless)  # pydicom's own encoder; its decoder needs no plugin
        ds.save_as(copy, enforce_file_format=True)
        copies.append(str(copy))
    args = ["--model", str(trained.model_dir), "--device", "cpu"]
    _, from_png, _ = _predict([*args, "--out", str(tmp_path / "png"), *map(str, images)], capsys)
    code, from_rle, _ = _predict([*args, "--out", str(tmp_path / "rle"), *copies], capsys)
    assert code == 0
    assert [r["covid_probability"] for r in from_rle] == [r["covid_probability"] for r in from_png]
    # The JPEG syntaxes of CR and DX archives (lossless process 14, JPEG-LS) decode through pylibjpeg-libjpeg.
    from pydicom.pixels import get_decoder

    assert get_decoder(JPEGLosslessSV1).is_available and get_decoder(JPEGLSLossless).is_available
