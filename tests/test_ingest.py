import contextlib
import hashlib
import json
import logging
import re
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest
from refusal import refused

from cxrtl import ingest as ingest_module
from cxrtl.artifacts import StoredFolder
from cxrtl.cli import main
from cxrtl.demo_data import write_demo_dataset
from cxrtl.errors import CxrtlError
from cxrtl.ingest import DATASET_DIR, DEMO_SLUG, SLUG, fetch_ingested, ingest, stored_reference
from cxrtl.store import LocalStore, open_store

PER_CLASS = 3
COUNTS = {"COVID": 3, "Normal": 3, "Lung_Opacity": 3, "Viral Pneumonia": 3}


@pytest.fixture(scope="module")
def demo_zip(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=PER_CLASS, image_size=32)


@pytest.fixture(scope="module")
def demo_folder(demo_zip, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(demo_zip) as zf:
        zf.extractall(folder)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _zip_with(path: Path, name: str, data: bytes = b"x", mode: int = 0o644) -> Path:
    """A demo-like zip with one extra member ``name`` (written raw, not sanitised)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{DATASET_DIR}/COVID/images/COVID-1.png", b"png")
        zf.writestr(f"{DATASET_DIR}/Normal/images/Normal-1.png", b"png")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


def test_ingest_zip(demo_zip, tmp_path):
    out = tmp_path / "raw"
    result = ingest(str(demo_zip), out)

    digest = _sha256(demo_zip)
    assert (result.slug, result.source, result.sha256) == (DEMO_SLUG, "zip", digest)  # the demo says so
    assert result.version == f"sha256:{digest[:12]}"
    assert result.counts == COUNTS
    assert "3 COVID" in result.summary() and result.version in result.summary()
    record = json.loads((out / "ingest.json").read_text())
    assert record == result.to_dict()
    assert set(record) == {"slug", "version", "sha256", "counts", "unreadable", "source", "created_at"}
    assert len(list((out / DATASET_DIR / "Normal" / "images").glob("*.png"))) == PER_CLASS

    lines = (out / "MANIFEST.sha256").read_text().splitlines()
    assert len(lines) == 4 * 2 * PER_CLASS + 4 + 1  # images, masks, metadata sheets, README
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == sorted(names)
    for line in lines:
        expected, name = line.split("  ", 1)
        assert _sha256(out / name) == expected
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("inner", [False, True], ids=["parent-folder", "dataset-folder"])
def test_ingest_folder(demo_folder, tmp_path, inner):
    source = demo_folder / DATASET_DIR if inner else demo_folder
    out = tmp_path / "raw"
    result = ingest(str(source), out)
    assert result.source == "folder"
    assert result.counts == COUNTS
    assert result.sha256 == _sha256(out / "MANIFEST.sha256")
    assert result.version == f"sha256:{result.sha256[:12]}"
    assert (out / DATASET_DIR / "COVID" / "masks" / "COVID-2.png").is_file()


def test_folder_and_its_zip_give_the_same_files(demo_zip, demo_folder, tmp_path):
    ingest(str(demo_zip), tmp_path / "from-zip")
    ingest(str(demo_folder), tmp_path / "from-folder")
    assert (tmp_path / "from-zip" / "MANIFEST.sha256").read_text() == (
        tmp_path / "from-folder" / "MANIFEST.sha256"
    ).read_text()


@pytest.mark.parametrize(
    ("member", "mode", "reason"),
    [
        ("../evil.txt", 0o644, "'..'"),
        (f"{DATASET_DIR}/../../evil.txt", 0o644, "'..'"),
        ("/tmp/cxrtl-evil.txt", 0o644, "absolute path"),
        (f"{DATASET_DIR}/link", stat.S_IFLNK | 0o777, "symbolic link"),
    ],
)
def test_unsafe_archives_are_refused_and_leave_nothing(tmp_path, member, mode, reason):
    archive = _zip_with(tmp_path / "bad.zip", member, b"/etc/passwd" if "link" in member else b"x", mode)
    out = tmp_path / "work" / "raw"
    with pytest.raises(CxrtlError, match=reason) as caught:
        ingest(str(archive), out)
    assert "bad.zip" in str(caught.value)
    assert not out.exists()
    assert _leftovers(out.parent) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()
    assert not Path("/tmp/cxrtl-evil.txt").exists()


def test_zip_without_the_kaggle_layout(tmp_path):
    archive = tmp_path / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/cat.png", b"png")
    with pytest.raises(CxrtlError, match=r"dataset\.zip: no COVID-19_Radiography_Dataset/COVID/images/ folder"):
        ingest(str(archive), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_zip_without_normal_images(tmp_path):
    archive = tmp_path / "half.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{DATASET_DIR}/COVID/images/COVID-1.png", b"png")
        zf.writestr(f"{DATASET_DIR}/Normal/images/readme.txt", b"no images here")
    with pytest.raises(CxrtlError, match=r"half\.zip: no PNG images in COVID-19_Radiography_Dataset/Normal/images/"):
        ingest(str(archive), tmp_path / "raw")


def test_not_a_zip(tmp_path):
    fake = tmp_path / "notes.zip"
    fake.write_text("not a zip")
    with pytest.raises(CxrtlError, match=r"notes\.zip: not a readable zip file"):
        ingest(str(fake), tmp_path / "raw")


def test_missing_source(tmp_path):
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(CxrtlError, match=f"{missing}: no such file or folder"):
        ingest(str(missing), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_failed_ingest_leaves_the_previous_output_as_it_was(demo_zip, tmp_path):
    out = tmp_path / "raw"
    ingest(str(demo_zip), out)
    before = (out / "ingest.json").read_text()
    with pytest.raises(CxrtlError):
        ingest(str(_zip_with(tmp_path / "bad.zip", "../evil.txt")), out)
    assert (out / "ingest.json").read_text() == before
    assert _leftovers(tmp_path) == []


def test_an_unrelated_folder_is_not_overwritten(demo_zip, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(CxrtlError, match="not an earlier output"):
        ingest(str(demo_zip), out)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_kaggle_without_credentials_does_not_import_kaggle(tmp_path, monkeypatch):
    for name in list(ingest_module.os.environ):
        if name.startswith("KAGGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        monkeypatch.delitem(sys.modules, name)

    with pytest.raises(CxrtlError, match="no Kaggle credentials found: set KAGGLE_API_TOKEN") as caught:
        ingest("kaggle", tmp_path / "raw")
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in str(caught.value)
    assert "kaggle" not in sys.modules
    assert not (tmp_path / "raw").exists()


class FakeKaggle:
    """Stands in for the Kaggle API, which cannot be reached from here; serves the demo zip as version 5."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.downloads: list[str] = []

    def dataset_status(self, dataset, format=None):
        assert (dataset, format) == (SLUG, "json(current_version_number)")
        return json.dumps({"current_version_number": 5})

    def dataset_download_files(self, dataset, path=None, **kwargs):
        self.downloads.append(dataset)
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.archive, Path(path) / "covid19-radiography-database.zip")


@pytest.fixture
def fake_kaggle(demo_zip, monkeypatch) -> FakeKaggle:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token-that-must-not-leak")
    fake = FakeKaggle(demo_zip)
    monkeypatch.setattr(ingest_module, "_kaggle_api", lambda: contextlib.nullcontext(fake))
    return fake


def test_kaggle_download_is_cached_in_the_store_by_version(fake_kaggle, demo_zip, tmp_path, caplog):
    store = LocalStore(tmp_path / "store")
    caplog.set_level(logging.INFO, logger="cxrtl.ingest")

    first = ingest("kaggle", tmp_path / "raw1", store=store)
    assert (first.source, first.version, first.sha256) == ("kaggle", "5", _sha256(demo_zip))
    assert fake_kaggle.downloads == [f"{SLUG}/5"]
    assert store.list() == [
        "datasets/covid19-radiography-database/5/archive.zip",
        "datasets/covid19-radiography-database/5/ingest.json",
    ]

    second = ingest("kaggle", tmp_path / "raw2", store=store)
    assert fake_kaggle.downloads == [f"{SLUG}/5"]  # not downloaded again
    assert (second.version, second.sha256, second.counts) == ("5", first.sha256, COUNTS)
    assert "reusing it instead of downloading" in caplog.text
    assert "token-that-must-not-leak" not in caplog.text


def test_kaggle_errors_do_not_echo_the_client_message(fake_kaggle, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("401 for https://user:token-that-must-not-leak@kaggle")

    monkeypatch.setattr(fake_kaggle, "dataset_status", fail)
    with pytest.raises(CxrtlError, match=r"could not look up the current version .*\(RuntimeError\)") as caught:
        ingest("kaggle", tmp_path / "raw")
    assert "token-that-must-not-leak" not in str(caught.value)


def test_zip_is_stored_once(demo_zip, tmp_path, caplog):
    store = LocalStore(tmp_path / "store")
    caplog.set_level(logging.INFO, logger="cxrtl.ingest")
    result = ingest(str(demo_zip), tmp_path / "raw1", store=store)
    key = f"datasets/covid19-radiography-database/sha256-{result.sha256[:12]}/archive.zip"
    assert store.sha256(key) == result.sha256
    assert store.get_json(key.replace("archive.zip", "ingest.json"))["counts"] == COUNTS
    stored_at = (store.root / key).stat().st_mtime_ns

    caplog.clear()
    ingest(str(demo_zip), tmp_path / "raw2", store=store)
    assert "already in" in caplog.text and "not storing it again" in caplog.text
    assert (store.root / key).stat().st_mtime_ns == stored_at


def test_folder_is_zipped_into_the_store_deterministically(demo_folder, tmp_path, caplog):
    store = LocalStore(tmp_path / "store")
    result = ingest(str(demo_folder), tmp_path / "raw1", store=store)
    key = f"datasets/covid19-radiography-database/sha256-{result.sha256[:12]}/archive.zip"
    stored = store.root / key
    first_bytes = stored.read_bytes()

    # The stored archive is itself a valid source with the same files.
    from_store = ingest(str(stored), tmp_path / "raw2")
    assert from_store.counts == COUNTS
    assert (tmp_path / "raw1" / "MANIFEST.sha256").read_text() == (tmp_path / "raw2" / "MANIFEST.sha256").read_text()

    # A fresh store gets the very same bytes; the first one is not written again.
    again = LocalStore(tmp_path / "store2")
    ingest(str(demo_folder), tmp_path / "raw3", store=again)
    assert (again.root / key).read_bytes() == first_bytes
    caplog.set_level(logging.INFO, logger="cxrtl.ingest")
    ingest(str(demo_folder), tmp_path / "raw1", store=store)
    assert "not storing it again" in caplog.text


@pytest.mark.parametrize("kind", ["folder store", "s3 store"])
def test_the_pipeline_hands_the_dataset_on_by_store_key(kind, demo_folder, tmp_path, request):
    """ingest's KFP artifact names the cached archive (a few hundred bytes, not the dataset); preprocess rebuilds
    the very ingested folder from it, and refuses an archive that changed in between."""
    store = LocalStore(tmp_path / "store") if kind == "folder store" else open_store(request.getfixturevalue("s3_env"))
    result = ingest(str(demo_folder), tmp_path / "ingested", store=store)
    ref = stored_reference(store, result)
    ref.write(tmp_path / "artifact")
    assert sum(p.stat().st_size for p in (tmp_path / "artifact").iterdir()) < 1000
    assert ref.size == store.size(ref.prefix + "archive.zip") + store.size(ref.prefix + "ingest.json")

    raw = fetch_ingested(store, StoredFolder.read(tmp_path / "artifact"), tmp_path / "fetched")
    assert (raw / "ingest.json").read_bytes() == store.get_bytes(ref.prefix + "ingest.json")
    ingested = tmp_path / "ingested" / DATASET_DIR
    files = sorted(p.relative_to(ingested) for p in ingested.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(raw / DATASET_DIR) for p in (raw / DATASET_DIR).rglob("*") if p.is_file())
    assert all((raw / DATASET_DIR / f).read_bytes() == (ingested / f).read_bytes() for f in files)

    # Another run replaced the cached archive of this version after ingest handed it on.
    store.put_bytes(ref.prefix + "archive.zip", b"another archive")
    with pytest.raises(CxrtlError, match=r"archive\.zip is not the file this step was handed \(sha256 differs\)"):
        fetch_ingested(store, ref, tmp_path / "fetched-again")


def test_cli(demo_zip, tmp_path, capsys):
    assert main(["ingest", "--source", str(demo_zip), "--out", str(tmp_path / "raw")]) == 0
    assert "3 COVID, 3 Normal" in capsys.readouterr().out
    line = refused(
        capsys,
        ["ingest", "--source", str(tmp_path / "none"), "--out", str(tmp_path / "raw2")],
        naming=["no such file or folder"],
        nothing_at=[tmp_path / "raw2"],
    )
    assert line.startswith("cxrtl: error: ingest source ")


def test_a_zip_put_into_an_s3_store_is_ingested_from_its_url(s3_env, demo_zip, tmp_path):
    open_store(s3_env).put_file("uploads/covid19.zip", demo_zip)
    result = ingest(f"{s3_env}/uploads/covid19.zip", tmp_path / "out")
    assert result.source == "store"
    # Kept in the run's store too (here the same bucket), by version, where the pipeline's steps fetch it.
    kept = stored_reference(
        open_store(s3_env), ingest(f"{s3_env}/uploads/covid19.zip", tmp_path / "again", open_store(s3_env))
    )
    assert kept.files["archive.zip"]["sha256"] == _sha256(demo_zip)
    assert result.sha256 == _sha256(demo_zip) and result.version == f"sha256:{_sha256(demo_zip)[:12]}"
    assert result.counts == COUNTS
    assert (tmp_path / "out" / DATASET_DIR / "COVID" / "images").is_dir()


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("uploads/missing.zip", "no such object; upload the zip with `cxrtl store --store s3://"),
        ("", "give s3://BUCKET/KEY of a zip"),
        ("uploads/", "give s3://BUCKET/KEY of a zip"),
    ],
)
def test_a_missing_object_in_the_store_says_how_to_upload_it(s3_env, tmp_path, key, says):
    with pytest.raises(CxrtlError, match=re.escape(says)):
        ingest(f"{s3_env}/{key}", tmp_path / "out")
    assert not (tmp_path / "out").exists()
