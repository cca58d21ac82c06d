"""The comparison: order, the sources tied for best, the paired tests, notes and the published figures, in
every format."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from refusal import refused

from cxrtl.cli import main
from cxrtl.compare import Predictions
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, evaluation_result, write_predictions
from cxrtl.html_page import EMBEDDED_LIMIT, Page, Section, Table
from cxrtl.ingest import DEMO_SLUG
from cxrtl.metrics import METRIC_NAMES, roc_points
from cxrtl.recipes import TrainConfig
from cxrtl.records import DataChecks, DatasetRef, ModelSummary
from cxrtl.repeats import champion_candidate
from cxrtl.report import FIGURES_FOLDER, TEXT_METRICS, build_report, skipped_sources_note
from cxrtl.weights import SOURCE_NAMES, PublishedMetrics, get_source

N_TEST = 20


def _evaluation(
    source: str,
    correct: int,
    *,
    stand_in: bool = True,
    split: str = "val",
    recipe: str = "recommended",
    n: int = N_TEST,
    threshold: float | None = None,
    **overrides,
) -> Evaluation:
    """What ``cxrtl evaluate`` gives for a model that gets ``correct`` of ``n`` test images right (the first ones)."""
    y = np.array([1, 0] * (n // 2) + [0] * (n % 2))
    right = np.arange(n) < correct
    confidence = 0.5 + 0.3 * np.linspace(1.0, 0.2, n)
    p = np.where(right == (y == 1), confidence, 1.0 - confidence)
    model = ModelSummary(
        source=source,
        source_description=get_source(source).description,
        weights_sha256=hashlib.sha256(source.encode()).hexdigest(),
        weights_stand_in=stand_in,
        run_id="r1",
        best_epoch=3,
        selection_split=split,
        selection_score=0.9,
        validation_threshold=threshold,
        history={"train_loss": [0.5, 0.4, 0.3], "select_score": [0.8, 0.85, 0.9]},
        config=TrainConfig.from_recipe(recipe, **overrides),
        dataset=DatasetRef("tawsifurrahman/covid19-radiography-database", "v5", "ab" * 32),
        device_name="cpu",
        cuda_runtime=None,
        cuda_driver=None,
        image=None,
    )
    predictions = Predictions([f"img{i}.png" for i in range(n)], y, p)
    return Evaluation(evaluation_result(predictions, model), roc_points(y, p), predictions)


@pytest.fixture
def ten() -> list[Evaluation]:
    """All ten sources, each with a different accuracy (moco-v2 best); only moco-v1 has real weights."""
    return [_evaluation(s, 10 + i, stand_in=s != "moco-v1") for i, s in enumerate(SOURCE_NAMES)]


def _table_rows(markdown: str, title: str = "") -> list[list[str]]:
    """The rows of the first table after the heading that holds ``title``, without the bold of marked rows."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and title in line)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return [
        [cell.strip().removeprefix("**").removesuffix("**") for cell in line.strip("|").split("|")]
        for line in table[2:]
    ]


def test_rows_are_ranked_by_accuracy_and_the_top_is_tied_with_what_it_does_not_beat_significantly(ten):
    report = build_report(list(reversed(ten)))
    assert [r.source for r in report.rows] == list(reversed(SOURCE_NAMES))
    accuracies = [r.metrics["accuracy"] for r in report.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert report.top.source == "moco-v2" and report.top.metrics["accuracy"] == pytest.approx(19 / 20)
    # On 20 images, 19 right is not significantly better than 15 right (4 discordant images: p = 0.125)...
    by_pair = {frozenset((t.a, t.b)): t for t in report.tests}
    assert by_pair[frozenset(("moco-v2", "inat2021-supervised"))].mcnemar_p == pytest.approx(2 / 16)
    assert len(report.tests) == 45
    assert report.tied[0] == "moco-v2"
    for row in report.rows[1:]:
        test = by_pair[frozenset(("moco-v2", row.source))]
        assert row.tied_for_best == (test.mcnemar_holm >= 0.05)


def test_equal_accuracy_is_ordered_by_roc_auc_undefined_last():
    tied = {s: _evaluation(s, 16) for s in ("chexpert", "imagenet", "moco-v2", "moco-v1")}
    for source, auc in (("chexpert", 0.7), ("imagenet", 0.9), ("moco-v2", float("nan")), ("moco-v1", 0.1)):
        tied[source].result.metrics["roc_auc"] = auc
    for order in (list(tied.values()), list(reversed(tied.values()))):
        assert [r.source for r in build_report(order).rows] == ["imagenet", "chexpert", "moco-v1", "moco-v2"]


def test_six_perfect_sources_are_all_tied_for_best_and_ordered_by_name_not_position():
    perfect = [_evaluation(s, N_TEST) for s in reversed(SOURCE_NAMES[:6])]
    report = build_report([*perfect, _evaluation("moco-v2", 8)])
    assert [r.source for r in report.rows[:6]] == sorted(SOURCE_NAMES[:6])
    assert report.tied == sorted(SOURCE_NAMES[:6])
    assert all(t.mcnemar_p == 1.0 and t.delong_p == 1.0 for t in report.tests if "moco-v2" not in (t.a, t.b))


@pytest.mark.slow
def test_markdown_has_every_metric_with_its_interval_and_the_tied_marks(ten):
    report = build_report(ten)
    md = report.markdown()
    rows = _table_rows(md, "Every metric")
    assert len(rows) == 10
    header = next(line for line in md.splitlines() if line.startswith("| Source |") and "PR AUC" in line)
    for name in ("Accuracy", "ROC AUC", "PR AUC", "Brier score", "ECE", "Sensitivity at 95% specificity"):
        assert f"| {name} (95% CI) |" in header
    assert "Published" not in header  # a recommended run with stand-ins is not the study's
    by_source = {row[0]: row for row in rows}
    assert set(by_source) == set(SOURCE_NAMES)
    for i, row in enumerate(report.rows, start=1):
        cells = by_source[row.source]
        assert cells[1] == (f"{i} (tied for best)" if row.tied_for_best else str(i))
        low, high = row.evaluation.result.intervals_95["accuracy"]
        right = round(row.metrics["accuracy"] * N_TEST)
        assert cells[2] == f"{row.metrics['accuracy']:.3f} {right}/{N_TEST} ({low:.3f}-{high:.3f})"
        assert len(cells) == 2 + len(METRIC_NAMES) + 2
    assert by_source["moco-v1"][-1] == report.evaluations["moco-v1"].result.model.weights_sha256[:12]
    assert by_source["imagenet"][-1] == "stand-in"
    pairs = _table_rows(md, "Paired tests")  # a matrix of Holm-adjusted p, McNemar / DeLong
    assert len(pairs) == 10 and all(len(p) == 11 for p in pairs)
    assert pairs[0][0] == report.rows[0].source and pairs[0][1] == ""
    t = next(t for t in report.tests if {t.a, t.b} == {report.rows[0].source, report.rows[1].source})
    assert pairs[0][2] == f"{t.mcnemar_holm:.3f} / {t.delong_holm:.3f}"
    summary = _table_rows(md, "Ranking")
    assert [r[0] for r in summary] == [r.source for r in report.rows] and summary[0][2] == "stand-in"
    assert "Tied for best" in md and "Best:" not in md


def test_notes_name_the_stand_ins_and_say_nothing_about_test_selection_on_val(ten):
    report = build_report(ten)
    stand_in_note = next(n for n in report.notes if "STAND-IN" in n)
    named = set(re.findall(r"[a-z0-9-]+", stand_in_note.split(":", 1)[1]))
    assert named >= set(SOURCE_NAMES) - {"moco-v1"} and "moco-v1" not in named
    assert not any("test split" in n and "optimistic" in n for n in report.notes)
    assert "Recipe: recommended." in report.notes and "Dataset version: v5." in report.notes
    hidden = next(n for n in report.notes if "published figures are hidden" in n)
    assert "recommended, not paper" in hidden and "20 images" in hidden and "stand-ins" in hidden


def _study_run(**overrides) -> list[Evaluation]:
    """Ten sources as the study ran them: paper recipe, its settings, its 1,453 test images, real weights."""
    n = PublishedMetrics.TEST_IMAGES
    return [
        _evaluation(s, n - 10 * i, recipe="paper", split="test", stand_in=False, n=n, **overrides)
        for i, s in enumerate(SOURCE_NAMES)
    ]


@pytest.mark.slow  # writes the whole report, its figures included
def test_a_comparable_run_shows_the_five_published_figures_in_each_row():
    report = build_report(_study_run())
    assert report.comparable
    head, rows = report.table()
    assert head[-5:] == [
        "Published accuracy",
        "Published precision",
        "Published sensitivity",
        "Published f1",
        "Published n",
    ]
    for row, cells in zip(report.rows, rows, strict=True):
        published = get_source(row.source).published
        figures = (published.accuracy, published.precision, published.sensitivity, published.f1)
        assert cells[-5:] == [*(f"{v:.4f}" for v in figures), "1,453"]
    assert "Recipe: paper." in report.notes
    assert not any("hidden" in n for n in report.notes)
    assert "Published sensitivity" in report.markdown() and "Published n" in report.html()


@pytest.mark.slow  # writes the whole report, its figures included
def test_an_overridden_paper_run_lists_its_overrides_and_hides_the_published_figures():
    report = build_report(_study_run(epochs=3, batch_size=16))
    assert not report.comparable and "Published" not in report.markdown()
    recipe_note = next(n for n in report.notes if n.startswith("Recipe:"))
    assert recipe_note != "Recipe: paper." and "epochs=3 (paper: 50)" in recipe_note
    assert "batch_size=16 (paper: 32)" in recipe_note
    assert any("published figures are hidden: settings were overridden" in n for n in report.notes)


@pytest.mark.slow  # writes the whole report, its figures included
def test_the_validation_threshold_is_reported_beside_05():
    with_threshold = [_evaluation(s, 15, threshold=0.65) for s in ("chexpert", "imagenet")]
    report = build_report(with_threshold)
    rows = _table_rows(report.markdown(), "At the threshold chosen on the validation split")
    assert [r[:2] for r in rows] == [["chexpert", "0.6500"], ["imagenet", "0.6500"]]
    at = report.evaluations["chexpert"].result.at_validation_threshold
    low, high = at.intervals_95["accuracy"]
    right = at.confusion["tp"] + at.confusion["tn"]
    assert rows[0][2] == f"{at.metrics['accuracy']:.3f} {right}/20 ({low:.3f}-{high:.3f})"
    assert "At the threshold chosen" not in build_report([_evaluation("imagenet", 15)]).markdown()


def test_the_figures_data_is_on_the_report(ten):
    report = build_report(ten)
    ev = report.evaluations["moco-v2"]
    assert ev.predictions.y_true.shape == ev.predictions.p_covid.shape == (N_TEST,)
    assert ev.result.model.history["select_score"] == [0.8, 0.85, 0.9]
    assert set(ev.result.confusion) == {"tn", "fp", "fn", "tp"} and set(ev.result.intervals_95) == set(METRIC_NAMES)


@pytest.mark.slow  # writes the whole report, its figures included
def test_sources_left_out_for_want_of_weights_are_named_in_every_format():
    note = skipped_sources_note(["inat2021-supervised", "inat2021-mini-swav-1k"])
    assert "inat2021-supervised, inat2021-mini-swav-1k" in note and "skip_missing_weights=true" in note
    report = build_report([_evaluation("imagenet", 18)], [note])
    assert note in report.notes and note in report.text()
    markdown = report.markdown()  # Markdown's markup characters escaped, so that it shows as written
    assert "Not trained, for want of verified weights" in markdown and "inat2021-mini-swav-1k. Put" in markdown
    assert html.escape(note) in report.html()


@pytest.mark.slow
def test_paper_selection_on_test_is_called_optimistic():
    report = build_report([_evaluation("imagenet", 18, split="test", recipe="paper", stand_in=False)])
    note = next(n for n in report.notes if "optimistic" in n)
    assert "chosen on the test split" in note
    assert not any("STAND-IN" in n for n in report.notes)
    assert note in report.markdown() and note in report.text()


@pytest.mark.slow  # writes the whole report, its figures included
def test_html_highlights_the_rows_tied_for_best_and_embeds_the_roc_plot(ten):
    report = build_report(ten)
    html = report.html()
    assert html.count('<tr class="tied">') == 2 * len(report.tied) >= 2  # the ranking and every metric
    assert re.search(r'<tr class="tied"><td>moco-v2</td>', html)
    for source in SOURCE_NAMES:
        assert f"<td>{source}</td>" in html
    results_table = html.split("<h2>")[1]
    assert results_table.count("<tr>") + results_table.count('<tr class="tied">') == 11  # header and ten rows
    assert "<h2>Paired tests</h2>" in html
    assert re.search(r'<img alt="ROC curves of all sources" width="\d+" src="data:image/png;base64,', html)


def test_text_and_csv_say_what_each_source_trained_on(ten):
    image = "r.io/cxrtl-train:0.1.0-cd99c347dcfd"
    gpu = dataclasses.replace(
        ten[0].result.model, device_name="NVIDIA L4", cuda_runtime="13.0", cuda_driver="13.1", image=image
    )
    report = build_report([dataclasses.replace(ten[0], result=dataclasses.replace(ten[0].result, model=gpu)), *ten[1:]])
    lines = report.text().splitlines()
    gpu = f"NVIDIA L4 (CUDA 13.0, driver up to CUDA 13.1) in image {image}"
    assert f"Trained on {gpu}: {ten[0].result.model.source}" in lines
    assert f"trained in image {image}" in report.text()  # the provenance's, under the banner
    on_cpu = next(line for line in lines if line.startswith("Trained on cpu: "))
    assert set(on_cpu.removeprefix("Trained on cpu: ").split(", ")) == {e.result.model.source for e in ten[1:]}
    head, rows = report.csv_rows()
    assert head[-4:] == ["device_name", "cuda_runtime", "cuda_driver", "image"]
    assert sorted(tuple(row[-4:]) for row in rows)[0] == ("NVIDIA L4", "13.0", "13.1", image)


def test_text_marks_the_lines_tied_for_best(ten):
    report = build_report(ten)
    text = report.text()
    header = next(line for line in text.splitlines() if line.startswith("source "))
    assert header.split() == ["source", *TEXT_METRICS, "epoch", "weights"]  # a terminal's width
    marked = [line.split()[0] for line in text.splitlines() if line.endswith("<- tied for best")]
    assert marked == report.tied and marked[0] == "moco-v2"
    for source in SOURCE_NAMES:
        assert re.search(rf"^{re.escape(source)}\s", text, re.MULTILINE)


@pytest.mark.slow  # writes the whole report, its figures included
def test_html_is_self_contained_for_the_kfp_ui(ten):
    # The KFP UI shows an HTML artifact in a sandboxed iframe (srcdoc, allow-scripts only): anything fetched
    # from elsewhere (a stylesheet, a script, an image URL) would not load there.
    html = build_report(ten).html()
    assert not re.search(r"<(link|script)\b|\bsrc=\"(?!data:)", html), html
    # Links are followed only when clicked, never fetched to show the page: the Files table's relative ones
    # (to the store's files beside the report) are the only ones that leave the page.
    outside = re.findall(r'<a href="(?!#)([^"]*)"', html)
    assert outside and all(href.startswith("../../models/") for href in outside)
    assert len(re.findall(r"\bhref=", html)) == len(re.findall(r'<a href="', html))


@pytest.mark.slow  # writes the whole report, its figures included
def test_write_gives_txt_md_html_and_csv(ten, tmp_path):
    report = build_report(ten)
    paths = report.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.txt", "report.md", "report.html", "results.csv", "pairs.csv"}
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([FIGURES_FOLDER, *(p.name for p in paths.values())])
    md = paths["md"].read_text()
    assert md == report.markdown() and "data:" not in md  # figures linked as files, which code hosts render
    linked = re.findall(rf"\]\(({FIGURES_FOLDER}/[^)]+)\)", md)
    assert linked and sorted(linked) == sorted(
        f"{FIGURES_FOLDER}/{p.name}" for p in (tmp_path / "out" / FIGURES_FOLDER).iterdir()
    )
    assert all((tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG") for name in linked)
    assert len(md.encode()) < 50_000
    kfp_ui = report.markdown(embed=True)  # the KFP UI shows this one file alone, up to EMBEDDED_LIMIT characters
    assert "data:image/png;base64," in kfp_ui and len(kfp_ui) <= EMBEDDED_LIMIT
    assert paths["html"].read_text() == report.html()
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["source"] for r in rows] == [r.source for r in report.rows]
    top = report.top.evaluation.result
    assert float(rows[0]["accuracy"]) == top.metrics["accuracy"]  # full precision
    assert [float(rows[0]["roc_auc_low"]), float(rows[0]["roc_auc_high"])] == top.intervals_95["roc_auc"]
    assert rows[0]["accuracy_interval"] == "clopper-pearson" and rows[0]["f1_interval"] == "clopper-pearson sens/spec"
    assert rows[0]["n"] == str(N_TEST) and rows[0]["tied_for_best"] == "True" and rows[0]["rank"] == "1"
    assert {r["source"]: r["stand_in"] for r in rows}["moco-v1"] == "False"
    with open(paths["pairs"], newline="") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 45 and set(pairs[0]) >= {"Source A", "Source B", "McNemar p (Holm)", "DeLong p (Holm)"}


@pytest.mark.slow  # writes the whole report, its figures included
def test_an_undefined_metric_is_shown_with_its_reason_never_as_zero():
    model = _evaluation("imagenet", 10).result.model
    y = np.array([1, 0] * (N_TEST // 2))
    never = Predictions([f"img{i}.png" for i in range(N_TEST)], y, np.full(N_TEST, 0.2))
    never_covid = Evaluation(evaluation_result(never, model), roc_points(y, never.p_covid), never)
    assert never_covid.result.confusion["tp"] + never_covid.result.confusion["fp"] == 0
    report = build_report([never_covid])
    assert "undefined (no image was predicted COVID)" in report.markdown()
    head, rows = report.csv_rows()
    row = dict(zip(head, rows[0], strict=True))
    assert row["precision"] == row["precision_low"] == ""
    assert row["precision_undefined"] == "no image was predicted COVID"


def test_repeats_rank_sources_by_their_mean_and_show_the_spread_and_each_seeds_interval():
    """chexpert is better on average (17, 17, 16 right); moco-v2 has the single best seed (19, 12, 12)."""
    evaluations = [
        *(_evaluation("chexpert", c, seed=s) for s, c in ((3, 17), (4, 17), (5, 16))),
        *(_evaluation("moco-v2", c, seed=s) for s, c in ((3, 19), (4, 12), (5, 12))),
    ]
    report = build_report(evaluations)
    assert [r.source for r in report.rows] == ["chexpert", "moco-v2"]
    best = report.rows[0]
    assert best.seeds.seeds == [3, 4, 5] and best.evaluation.result.model.config.seed == 3
    assert best.seeds.mean()["accuracy"] == pytest.approx((17 + 17 + 16) / 60)
    assert best.seeds.sd("accuracy") == pytest.approx(np.std([0.85, 0.85, 0.80], ddof=1))
    head, rows = report.table()
    column = head.index("Accuracy across seeds: mean ± SD [each seed (95% CI)]")
    assert rows[0][column].startswith("0.8333 ± 0.0289 over 3 seeds [seed 3: 0.850 17/20 (0.621-0.968); seed 4:")
    assert any("several seeds on one shared split" in note for note in report.notes)
    assert "Ranked by accuracy (the mean over the training seeds)" in report.summary()
    # The champion candidate is one model: the best seed of the best source, not moco-v2's lucky seed.
    candidate = champion_candidate(evaluations, "accuracy")
    assert (candidate.result.model.source, candidate.result.model.config.seed) == ("chexpert", 3)
    with pytest.raises(CxrtlError, match="two results for weight source 'chexpert' with training seed 4"):
        build_report([*evaluations, _evaluation("chexpert", 10, seed=4)])


def test_one_seed_per_source_keeps_the_table_as_it_was(ten):
    head, _ = build_report(ten).table()
    assert not any("seeds" in h for h in head)


def test_a_source_given_twice_is_refused():
    with pytest.raises(CxrtlError, match="two results for weight source 'chexpert'"):
        build_report([_evaluation("chexpert", 15), _evaluation("imagenet", 16), _evaluation("chexpert", 17)])


def test_no_results_is_refused():
    with pytest.raises(CxrtlError, match="no evaluation results"):
        build_report([])


def _write_folder(folder: Path, ev: Evaluation) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(ev.result.to_dict()))
    (folder / "roc.json").write_text(json.dumps(ev.roc))
    write_predictions(folder / "predictions.csv", ev.predictions, ev.result.threshold)
    return folder


@pytest.mark.slow  # writes the whole report, its figures included
def test_cli_report_prints_the_table_and_writes_the_files(tmp_path, capsys):
    folders = [_write_folder(tmp_path / "eval" / s, _evaluation(s, c)) for s, c in (("chexpert", 14), ("imagenet", 18))]
    out = tmp_path / "report"
    assert main(["report", "--results", *map(str, folders), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    first = next(line for line in printed.splitlines() if "<- tied for best" in line)
    assert first.startswith("imagenet ")
    assert sorted(p.name for p in out.iterdir()) == [
        FIGURES_FOLDER,
        "pairs.csv",
        "report.html",
        "report.md",
        "report.txt",
        "results.csv",
    ]
    assert (out / "report.txt").read_text().strip() == printed.strip()


def test_cli_report_on_a_folder_without_results_is_one_error_line(tmp_path, capsys):
    good = _write_folder(tmp_path / "eval" / "imagenet", _evaluation("imagenet", 18))
    empty = tmp_path / "eval" / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    refused(
        capsys, ["report", "--results", str(good), str(empty), "--out", str(out)], naming=[str(empty)], nothing_at=[out]
    )


@pytest.mark.slow
def test_banner_and_provenance_come_first_in_every_format(ten):
    """Stand-ins, a small test split and research use only, before anything else; then where it all came from."""
    report = build_report(ten)
    banner = report.banner()
    assert banner[0].startswith("STAND-IN WEIGHTS: 9 of 10 sources")
    assert banner[1].startswith("SMALL TEST SPLIT: 20 test images (10 COVID, 10 Normal)")
    assert banner[-1].startswith("Research use only, not a medical device")
    text, md, html = report.text(), report.markdown(), report.html()
    assert text.splitlines()[0] == f"!! {banner[0]}" and "Run: r1 (no KFP run link)" in text
    assert md.splitlines()[0] == "# Weight sources compared: run r1" and md.splitlines()[2] == f"> **{banner[0]}**"
    assert "<title>Weight sources compared: run r1</title>" in html
    assert html.index('id="banner"') < html.index('id="provenance"') < html.index("<table")
    assert "tawsifurrahman/covid19-radiography-database version v5" in html and "DEMO" not in html


@pytest.mark.slow
def test_demo_data_are_named_as_demo_data(ten):
    demo = DatasetRef(DEMO_SLUG, "sha256:5bd68f5b6e21", "cd" * 32)
    evaluations = []
    for ev in ten:
        model = dataclasses.replace(ev.result.model, dataset=demo)
        evaluations.append(dataclasses.replace(ev, result=dataclasses.replace(ev.result, model=model)))
    report = build_report(evaluations)
    assert any(line.startswith("DEMO DATA: the images are synthetic") for line in report.banner())
    assert "(DEMO: synthetic images, not chest X-rays)" in report.markdown()


def test_split_sizes_by_class_come_from_evaluates_checks(ten):
    assert build_report(ten).split_table() is None  # evaluations without checks.json: no table, no guess
    counts = {"train": {"Normal": 28, "COVID": 27}, "val": {"Normal": 6, "COVID": 6}, "test": {"Normal": 7, "COVID": 6}}
    checks = DataChecks(None, None, None, None, None, None, split_counts=counts)
    report = build_report([dataclasses.replace(e, checks=checks) for e in ten])
    assert report.split_table() == (
        ["Split", "Normal", "COVID", "Total"],
        [["train", "28", "27", "55"], ["val", "6", "6", "12"], ["test", "7", "6", "13"]],
    )


def test_each_sources_files_are_linked_relative_to_the_reports_place_in_the_store(ten, tmp_path):
    from cxrtl.store import LocalStore, keys

    report = build_report(ten)
    head, rows = report.artefacts_table()
    assert head == ["Source", "model.json", "metrics.json", "predictions.csv", "model.pt"]
    source = rows[0][0]
    model_json = rows[0][1]
    # Resolved from the report's folder in a store, the link lands on the model's own key.
    store = LocalStore(tmp_path)
    page = store.root / keys.report_key("r1", "report.html")
    target = (page.parent / model_json.href).resolve()
    assert target == (store.root / keys.model_key(source, "r1", "model.json")).resolve()
    files = Page("files", [Section("Files", [Table(head, rows)])])  # as page() places it, without the figures
    assert f'<a href="{model_json.href}">model.json</a>' in files.html()
    assert f"[model.json](<{model_json.href}>)" in files.markdown("figures")


def test_the_previous_runs_figures_are_set_beside_this_runs(ten, tmp_path):
    from cxrtl.report import PreviousRun, previous_run
    from cxrtl.store import LocalStore, keys

    store = LocalStore(tmp_path / "store")
    assert previous_run(store, "r1") is None  # no run before this one
    head, rows = build_report(ten[:2]).csv_rows()  # the run before: two sources
    text = io.StringIO()
    csv.writer(text).writerows([head, *rows])
    store.put_bytes(keys.report_key("r0", "results.csv"), text.getvalue().encode())
    store.put_json(keys.last_success_key(), {"run_id": "r0", "finished_at": "2026-12-01T00:00:00Z", "fingerprint": {}})
    previous = previous_run(store, "r1")
    before = {e.result.model.source: e.result.metrics for e in ten[:2]}
    assert previous == PreviousRun("r0", {s: {m: before[s][m] for m in ("accuracy", "roc_auc")} for s in before})
    assert previous_run(store, "r0") is None  # a retried report of the last success itself: no "before"
    report = build_report(ten, previous=previous)
    head, rows = report.previous_table()
    assert head == ["Source", "Accuracy now", "Accuracy before", "ROC AUC now", "ROC AUC before"]
    assert len(rows) == len(ten) and sum(row[2] != "-" for row in rows) == 2  # the others had no run before
