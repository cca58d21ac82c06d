"""Evaluation on the test split: metrics by hand, the files it writes, and the models it refuses."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from refusal import refused

from cxrtl.cli import main
from cxrtl.data import CLASS_NAMES, PreparedData
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, evaluate, evaluation_result, load_evaluation, read_predictions
from cxrtl.gradcam import GRADCAM_FILE, GradCamSet, fixed_images
from cxrtl.ingest import ingest
from cxrtl.metrics import METRIC_NAMES, binary_metrics, clopper_pearson, json_safe, roc_points
from cxrtl.preprocess import preprocess
from cxrtl.recipes import TrainConfig
from cxrtl.records import EvaluationResult
from cxrtl.report import report_from_folders
from cxrtl.store import Store, sha256_file
from cxrtl.train import train

pytestmark = pytest.mark.slow  # most tests share a model trained for them

RUN_ID = "test-evaluate"


@dataclass
class Evaluated:
    evaluation: Evaluation
    data_dir: Path
    model_dir: Path
    out_dir: Path
    store: Store


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, stand_in_store, prepared) -> Iterator[Evaluated]:
    """One epoch of the paper recipe from the imagenet stand-in, evaluated on the paper test split."""
    root = tmp_path_factory.mktemp("evaluate")
    config = TrainConfig.from_recipe("paper", epochs=1, batch_size=16, device="cpu")
    train(prepared["paper"], "imagenet", root / "model", config, stand_in_store, RUN_ID)
    evaluation = evaluate(prepared["paper"], root / "model", root / "eval", store=stand_in_store, device="cpu")
    yield Evaluated(evaluation, prepared["paper"], root / "model", root / "eval", stand_in_store)
    for key in stand_in_store.list(f"runs/{RUN_ID}/") + stand_in_store.list(f"models/imagenet/{RUN_ID}/"):
        stand_in_store.delete(key)
    shutil.rmtree(root)


# --- metrics against hand-computed values ---------------------------------------------------------

# Four COVID, six Normal. At the 0.5 threshold: tp 3 (0.9, 0.8, 0.5: the threshold counts as COVID), fn 1 (0.3),
# fp 1 (0.6), tn 5. Of the 24 (COVID, Normal) pairs the COVID image scores higher in 6 + 6 + 5 + 2 = 19.
Y_TRUE = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P_COVID = np.array([0.9, 0.8, 0.5, 0.3, 0.6, 0.2, 0.1, 0.4, 0.45, 0.35])


def test_binary_metrics_match_hand_computed_values():
    result = binary_metrics(Y_TRUE, P_COVID)
    assert result["n"] == 10 and result["threshold"] == 0.5
    assert result["confusion"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    m = result["metrics"]
    assert set(m) == set(METRIC_NAMES)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["sensitivity"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(19 / 24)
    intervals = result["intervals_95"]
    assert intervals["accuracy"] == pytest.approx([0.4439, 0.9748], abs=5e-4)  # Clopper-Pearson, 8 of 10
    assert intervals["specificity"] == pytest.approx([float(v) for v in clopper_pearson(5, 6)])
    assert intervals["sensitivity"] == pytest.approx([float(v) for v in clopper_pearson(3, 4)])
    json.dumps(json_safe(result), allow_nan=False)  # what metrics.json holds must be plain JSON


def test_clopper_pearson_known_values_and_edges():
    assert clopper_pearson(8, 10) == pytest.approx((0.4439, 0.9748), abs=1e-3)
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-9)  # the exact bound at n of n
    assert clopper_pearson(0, 10)[0] == 0.0
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))


def test_one_class_only_gives_no_auc_and_no_curve():
    result = binary_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.7, 0.2, 0.3]))
    assert math.isnan(result["metrics"]["roc_auc"])
    assert math.isnan(result["metrics"]["sensitivity"]) and result["metrics"]["specificity"] == 0.75
    assert result["undefined"]["sensitivity"] == "the test split holds no COVID image"
    no_curve = {"fpr": [], "tpr": [], "thresholds": []}
    assert roc_points(np.zeros(4, dtype=int), np.array([0.1, 0.7, 0.2, 0.3])) == no_curve


def test_roc_points_are_finite_and_monotone():
    roc = roc_points(Y_TRUE, P_COVID)
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) >= 3
    assert all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in roc["thresholds"])
    assert roc["thresholds"][0] == 1.0  # sklearn's +inf
    assert roc["fpr"] == sorted(roc["fpr"]) and roc["tpr"] == sorted(roc["tpr"])
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)


# --- evaluate on a trained model ------------------------------------------------------------------


def test_metrics_json_has_every_field(evaluated):
    assert _same(load_evaluation(evaluated.out_dir).result, evaluated.evaluation.result)
    result = evaluated.evaluation.result
    assert set(json.loads((evaluated.out_dir / "metrics.json").read_text())) == {
        "schema_version",
        "n",
        "threshold",
        "metrics",
        "intervals_95",
        "interval_methods",
        "undefined",
        "confusion",
        "bootstrap",
        "at_validation_threshold",
        "model",
    }
    data = PreparedData.load(evaluated.data_dir)
    n_test = len(data.indices("test"))
    assert result.n == n_test == sum(result.confusion.values())
    assert set(result.confusion) == {"tn", "fp", "fn", "tp"}
    assert set(result.metrics) == set(METRIC_NAMES)
    assert set(result.intervals_95) == set(result.interval_methods) == set(METRIC_NAMES)
    assert set(result.undefined) <= set(METRIC_NAMES)
    assert result.at_validation_threshold is None  # the paper recipe chooses no threshold
    for low, high in result.intervals_95.values():
        # NaN where the denominator is empty (no image predicted COVID, say); a range otherwise.
        assert (math.isnan(low) and math.isnan(high)) or 0.0 <= low <= high <= 1.0
    model = result.model
    assert model.source == "imagenet" and model.run_id == RUN_ID
    assert model.weights_stand_in is True and model.selection_split == "test"
    assert model.config.recipe == "paper"
    assert model.history["select_score"] == model.history["select_accuracy"]  # the paper selects on accuracy


def test_metrics_recomputed_from_predictions_csv_match_metrics_json_exactly(evaluated):
    predictions = read_predictions(evaluated.out_dir / "predictions.csv")
    written = json.loads((evaluated.out_dir / "metrics.json").read_text())
    model = EvaluationResult.from_dict(written, "metrics.json").model
    assert evaluation_result(predictions, model).to_dict() == written
    assert np.array_equal(predictions.p_covid, evaluated.evaluation.predictions.p_covid)


def test_predictions_csv_has_one_row_per_test_image_matching_the_metrics(evaluated):
    data = PreparedData.load(evaluated.data_dir)
    test = data.indices("test")
    with open(evaluated.out_dir / "predictions.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["id", "true_label", "predicted_label", "covid_probability"]
    assert [r["id"] for r in rows] == [data.ids[i] for i in test]
    assert [r["true_label"] for r in rows] == [CLASS_NAMES[data.labels[i]] for i in test]
    p = np.array([float(r["covid_probability"]) for r in rows])
    assert [repr(float(v)) for v in p] == [r["covid_probability"] for r in rows]  # full precision
    assert ((p >= 0) & (p <= 1)).all()
    assert [r["predicted_label"] for r in rows] == ["COVID" if v >= 0.5 else "Normal" for v in p]
    correct = sum(r["true_label"] == r["predicted_label"] for r in rows)
    assert evaluated.evaluation.metrics["accuracy"] == pytest.approx(correct / len(rows))
    tp = sum(r["true_label"] == r["predicted_label"] == "COVID" for r in rows)
    assert evaluated.evaluation.result.confusion["tp"] == tp


def test_roc_json_is_finite_and_written_to_the_store(evaluated):
    roc = json.loads((evaluated.out_dir / "roc.json").read_text())
    assert roc == evaluated.evaluation.roc
    assert all(math.isfinite(v) for key in ("fpr", "tpr", "thresholds") for v in roc[key])
    prefix = f"models/imagenet/{RUN_ID}"
    for name in ("metrics.json", "predictions.csv", "roc.json"):
        assert evaluated.store.sha256(f"{prefix}/{name}") == _sha256(evaluated.out_dir / name)


def test_gradcam_npz_holds_the_fixed_test_images_and_the_models_mistakes(evaluated):
    data = PreparedData.load(evaluated.data_dir)
    test = data.indices("test")
    cams = GradCamSet.load(evaluated.out_dir / GRADCAM_FILE)
    fixed = fixed_images([data.ids[i] for i in test], data.labels[test])
    assert cams.ids[: len(fixed)] == [data.ids[test[k]] for k in fixed]
    with open(evaluated.out_dir / "predictions.csv", newline="") as f:
        predicted = {r["id"]: r for r in csv.DictReader(f)}
    for k, image_id in enumerate(cams.ids):
        row = predicted[image_id]
        assert CLASS_NAMES[cams.labels[k]] == row["true_label"]
        assert cams.correct[k] == (row["true_label"] == row["predicted_label"])
        np.testing.assert_array_equal(cams.images[k], data.images[data.ids.index(image_id)])
    assert all(not ok for ok, kind in zip(cams.correct, cams.kinds, strict=True) if kind == "mistake")
    assert cams.maps.shape == cams.images.shape == (len(cams.ids), data.image_size, data.image_size)
    key = f"models/imagenet/{RUN_ID}/{GRADCAM_FILE}"
    assert evaluated.store.sha256(key) == _sha256(evaluated.out_dir / GRADCAM_FILE)


def test_evaluation_folder_loads_back_and_feeds_the_report(evaluated, tmp_path):
    loaded = load_evaluation(evaluated.out_dir)
    assert _same(loaded.result, evaluated.evaluation.result) and loaded.roc == evaluated.evaluation.roc
    report = report_from_folders([evaluated.out_dir], tmp_path / "report")
    assert report.top.source == "imagenet" and report.top.model.weights_stand_in and report.tied == ["imagenet"]
    assert any("STAND-IN" in note and "imagenet" in note for note in report.notes)


def test_cli_evaluate_prints_the_metrics(evaluated, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(evaluated.data_dir),
                "--model",
                str(evaluated.model_dir),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"accuracy {evaluated.evaluation.metrics['accuracy']:.4f}" in printed
    assert json.loads((out / "metrics.json").read_text())["metrics"] == json_safe(evaluated.evaluation.metrics)


def test_checks_carry_duplicates_and_collections_from_the_data_into_the_report(evaluated, tmp_path):
    checks = json.loads((evaluated.out_dir / "checks.json").read_text())
    data = PreparedData.load(evaluated.data_dir)
    assert checks["duplicates"] == dataclasses.asdict(data.info.duplicates) and checks["masked"] is None
    assert checks["split_counts"] == data.info.counts  # the report's split sizes by class
    assert load_evaluation(evaluated.out_dir).checks == evaluated.evaluation.checks
    test = data.indices("test")
    table = checks["collections"]
    assert sum(row["n"] for row in table.values()) == len(test)
    for collection, row in table.items():
        mine = [i for i in test if data.collections[i] == collection]
        assert row["COVID"] == sum(int(data.labels[i]) for i in mine) and row["n"] == len(mine)
    report = report_from_folders([evaluated.out_dir], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Test images by collection" in markdown and "https://demo.example/hospital-a/covid-ward" in markdown
    assert any(note.startswith("Duplicates: preprocessing found 0 group(s)") for note in report.notes)
    assert "Test images by collection" in (tmp_path / "report" / "report.html").read_text()


def test_masked_evaluation_blacks_out_the_lungs_and_the_report_flags_what_survives(evaluated, tmp_path, capsys):
    """Masks covering the whole image leave the model nothing: one class for every image, chance level."""
    everything = tmp_path / "data"
    shutil.copytree(evaluated.data_dir, everything)
    packed = np.load(everything / "masks.npy")
    np.save(everything / "masks.npy", np.full_like(packed, 255))
    masked = evaluate(everything, evaluated.model_dir, tmp_path / "eval", device="cpu", masked=True).checks.masked
    assert masked.n == evaluated.evaluation.result.n
    assert {masked.sensitivity, masked.specificity} == {0.0, 1.0}
    assert masked.balanced_accuracy == 0.5 and not masked.flagged

    # The real masks leave the outside of the lungs; the verdict follows the documented threshold.
    argv = ["evaluate", "--data", str(evaluated.data_dir), "--model", str(evaluated.model_dir)]
    assert main([*argv, "--out", str(tmp_path / "real"), "--device", "cpu", "--masked"]) == 0
    real = json.loads((tmp_path / "real" / "checks.json").read_text())["masked"]
    assert real["flagged"] == (real["balanced_accuracy"] >= 0.75)
    assert f"lungs blacked out: balanced accuracy {real['balanced_accuracy']:.4f}" in capsys.readouterr().out
    flagged = json.loads((tmp_path / "real" / "checks.json").read_text())
    flagged["masked"].update(balanced_accuracy=0.9, flagged=True)
    (tmp_path / "real" / "checks.json").write_text(json.dumps(flagged))
    notes = report_from_folders([tmp_path / "real"], tmp_path / "report").notes
    assert any(n.startswith("SHORTCUT WARNING: imagenet still reach a balanced accuracy of 0.75") for n in notes)


def test_masked_evaluation_without_usable_masks_is_one_error_and_the_plain_one_still_runs(evaluated, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(evaluated.data_dir, broken)
    (broken / "masks.npy").unlink()
    info = json.loads((broken / "info.json").read_text())
    info["masks"] = "1 image(s) without a usable mask; the first: mask X.png is 64x32 for an image of 64x64"
    (broken / "info.json").write_text(json.dumps(info))
    with pytest.raises(CxrtlError, match=r"no usable lung masks for the masked evaluation \(1 image\(s\) .*64x32"):
        evaluate(broken, evaluated.model_dir, tmp_path / "masked", device="cpu", masked=True)
    assert not (tmp_path / "masked").exists()
    assert evaluate(broken, evaluated.model_dir, tmp_path / "plain", device="cpu").checks.masked is None


def test_a_model_is_not_scored_on_images_it_trained_on_unless_allowed(evaluated, tmp_path, capsys):
    """The same images under a split drawn differently (another seed, recipe or dataset version)."""
    reshuffled = tmp_path / "data"
    shutil.copytree(evaluated.data_dir, reshuffled)
    data = PreparedData.load(evaluated.data_dir)
    np.save(reshuffled / "split.npy", np.full(len(data.ids), 2, dtype=np.uint8))  # every image in the test split
    trained = len(data.indices("train"))
    assert json.loads((evaluated.model_dir / "seen.json").read_text())["trained"] == sorted(
        data.hashes[i] for i in data.indices("train")
    )
    with pytest.raises(CxrtlError, match=f"was trained on {trained} of the {len(data.ids)} test images"):
        evaluate(reshuffled, evaluated.model_dir, tmp_path / "refused", device="cpu")
    assert not (tmp_path / "refused").exists()
    argv = ["-q", "evaluate", "--data", str(reshuffled), "--model", str(evaluated.model_dir), "--device", "cpu"]
    refused(capsys, [*argv, "--out", str(tmp_path / "cli")], naming=["--allow-training-images"])
    assert main([*argv, "--out", str(tmp_path / "allowed"), "--allow-training-images"]) == 0
    assert json.loads((tmp_path / "allowed" / "checks.json").read_text())["trained_on_test_images"] == trained
    notes = report_from_folders([tmp_path / "allowed"], tmp_path / "report").notes
    assert (
        f"WARNING: scored on test images they were trained on or chose their epoch on, so their metrics look better "
        f"than they are: "
        f"imagenet ({trained} of {len(data.ids)})." in notes
    )
    assert json.loads((evaluated.out_dir / "checks.json").read_text())["trained_on_test_images"] == 0


def test_a_model_trained_at_another_image_size_is_refused(evaluated, demo_zip, tmp_path):
    ingest(str(demo_zip), tmp_path / "raw")
    preprocess(tmp_path / "raw", tmp_path / "data32", recipe="paper", image_size=32)
    with pytest.raises(CxrtlError, match=r"trained on 64 px images.*holds 32 px"):
        evaluate(tmp_path / "data32", evaluated.model_dir, tmp_path / "eval", device="cpu")
    assert not (tmp_path / "eval").exists()


def test_missing_and_foreign_models_are_refused(evaluated, tmp_path, capsys):
    with pytest.raises(CxrtlError, match=r"no model\.pt"):
        evaluate(evaluated.data_dir, tmp_path / "nothing", tmp_path / "eval")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes((evaluated.model_dir / "model.pt").read_bytes()[:4096])
    argv = ["evaluate", "--data", str(evaluated.data_dir), "--model", str(broken), "--out", str(tmp_path / "eval")]
    refused(capsys, argv, naming=["not a model written by cxrtl"], nothing_at=[tmp_path / "eval"])


def test_metrics_json_is_strict_json_when_a_metric_is_undefined(evaluated, tmp_path):
    """A test split of Normal images only leaves ROC AUC and sensitivity undefined; the file must still be JSON
    that any parser reads (RFC 8259 has no NaN): ``null``, not ``NaN``."""
    normal_only = tmp_path / "normal-only"
    shutil.copytree(evaluated.data_dir, normal_only)
    data = PreparedData.load(normal_only)
    split = np.array(data.split)
    split[(split == 2) & (data.labels == 1)] = 0
    np.save(normal_only / "split.npy", split)

    evaluation = evaluate(normal_only, evaluated.model_dir, tmp_path / "eval", device="cpu")
    assert evaluation.result.confusion["tp"] + evaluation.result.confusion["fn"] == 0
    for name in ("metrics.json", "roc.json"):
        json.loads((tmp_path / "eval" / name).read_text(), parse_constant=_refuse_constant)


def _refuse_constant(name: str):
    raise ValueError(f"not JSON: {name}")


def _same(a: EvaluationResult, b: EvaluationResult) -> bool:
    """Equal, NaN included (NaN != NaN)."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def _sha256(path: Path) -> str:
    return sha256_file(path)


def test_damaged_results_and_data_are_one_error_naming_the_folder(evaluated, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.json").write_text('{"metrics": ')
    with pytest.raises(CxrtlError, match=str(results)):
        load_evaluation(results)
    data = tmp_path / "data"
    shutil.copytree(evaluated.data_dir, data)
    (data / "info.json").write_text("not json")
    with pytest.raises(CxrtlError, match=f"{data}: a damaged preprocessed dataset"):
        PreparedData.load(data)


def _copy_results(evaluated: Evaluated, folder: Path, source: str = "imagenet") -> Path:
    shutil.copytree(evaluated.out_dir, folder)
    record = json.loads((folder / "metrics.json").read_text())
    record["model"]["source"] = source
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def _rewrite_predictions(folder: Path, change) -> None:
    with open(folder / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    change(rows)
    with open(folder / "predictions.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _drop_column(rows):
    for row in rows:
        del row[3]


def _set_probability(value: str):
    def change(rows):
        rows[2][3] = value

    return change


def _duplicate_id(rows):
    rows[2][0] = rows[1][0]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_drop_column, "no column covid_probability"),
        (_set_probability("1.5"), "line 3: covid_probability '1.5' is not a number in [0, 1]"),
        (_set_probability("-0.1"), "line 3: covid_probability '-0.1' is not a number in [0, 1]"),
        (_set_probability("nan"), "line 3: covid_probability 'nan' is not a number in [0, 1]"),
        (_set_probability(""), "line 3: covid_probability '' is not a number in [0, 1]"),
        (_duplicate_id, "given twice"),
        (lambda rows: rows.pop(), "images, metrics.json counts"),
    ],
    ids=["missing-column", "above-1", "below-0", "nan", "empty", "duplicate-id", "row-missing"],
)
def test_bad_predictions_are_one_error_line(evaluated, tmp_path, capsys, change, named):
    folder = _copy_results(evaluated, tmp_path / "eval")
    _rewrite_predictions(folder, change)
    out = tmp_path / "report"
    line = refused(capsys, ["report", "--results", str(folder), "--out", str(out)], nothing_at=[out])
    assert str(folder) in line and "predictions.csv" in line and named in line, line


def test_report_on_results_from_different_test_splits_is_refused(evaluated, tmp_path, capsys):
    same = _copy_results(evaluated, tmp_path / "chexpert", source="chexpert")
    other = _copy_results(evaluated, tmp_path / "moco-v1", source="moco-v1")
    _rewrite_predictions(other, lambda rows: rows[1].__setitem__(0, "elsewhere.png"))
    out = tmp_path / "report"
    assert main(["report", "--results", str(evaluated.out_dir), str(same), "--out", str(out)]) == 0
    refused(
        capsys,
        ["report", "--results", str(evaluated.out_dir), str(same), str(other), "--out", str(tmp_path / "r2")],
        naming=["different test splits", "moco-v1"],
        nothing_at=[tmp_path / "r2"],
    )
