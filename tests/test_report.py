"""The comparison table: order, highlighting, notes and the published column, in every format."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from refusal import refused

from cxrtl.cli import main
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation
from cxrtl.metrics import binary_metrics, roc_points
from cxrtl.recipes import TrainConfig
from cxrtl.records import DatasetRef, EvaluationResult, ModelSummary
from cxrtl.repeats import champion_candidate
from cxrtl.report import build_report, skipped_sources_note
from cxrtl.weights import SOURCE_NAMES, get_source

N_TEST = 20


def _evaluation(
    source: str, correct: int, *, stand_in: bool = True, split: str = "val", recipe: str = "recommended", seed: int = 0
) -> Evaluation:
    """What ``cxrtl evaluate`` gives for a model that gets ``correct`` of 20 test images right (the first ones)."""
    y = np.array([1, 0] * (N_TEST // 2))
    right = np.arange(N_TEST) < correct
    confidence = 0.5 + 0.3 * np.linspace(1.0, 0.2, N_TEST)
    p = np.where(right == (y == 1), confidence, 1.0 - confidence)
    model = ModelSummary(
        source=source,
        source_description=get_source(source).description,
        weights_sha256=hashlib.sha256(source.encode()).hexdigest(),
        weights_stand_in=stand_in,
        run_id="r1",
        best_epoch=3,
        selection_split=split,
        selection_accuracy=0.9,
        config=TrainConfig.from_recipe(recipe, seed=seed),
        dataset=DatasetRef("tawsifurrahman/covid19-radiography-database", "v5", "ab" * 32),
    )
    return Evaluation(EvaluationResult(**binary_metrics(y, p), model=model), roc_points(y, p))


@pytest.fixture
def ten() -> list[Evaluation]:
    """All ten sources, each with a different accuracy (moco-v2 best); only moco-v1 has real weights."""
    return [_evaluation(s, 10 + i, stand_in=s != "moco-v1") for i, s in enumerate(SOURCE_NAMES)]


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_rows_are_sorted_by_accuracy_best_first(ten):
    report = build_report(list(reversed(ten)))
    assert [r.source for r in report.rows] == list(reversed(SOURCE_NAMES))
    accuracies = [r.metrics["accuracy"] for r in report.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert report.best.source == "moco-v2" and report.best.metrics["accuracy"] == pytest.approx(19 / 20)
    assert report.best.accuracy_ci == tuple(report.evaluations["moco-v2"].result.intervals_95["accuracy"])


def test_equal_accuracy_is_ordered_by_roc_auc_undefined_last():
    tied = {s: _evaluation(s, 16) for s in ("chexpert", "imagenet", "moco-v2", "moco-v1")}
    for source, auc in (("chexpert", 0.7), ("imagenet", 0.9), ("moco-v2", float("nan")), ("moco-v1", 0.1)):
        tied[source].result.metrics["roc_auc"] = auc
    for order in (list(tied.values()), list(reversed(tied.values()))):
        assert [r.source for r in build_report(order).rows] == ["imagenet", "chexpert", "moco-v1", "moco-v2"]


def test_markdown_has_every_source_the_best_in_bold_and_the_published_accuracy(ten):
    report = build_report(ten)
    md = report.markdown()
    rows = _table_rows(md)
    assert len(rows) == 10
    assert rows[0][0] == "**moco-v2**" and all(c.startswith("**") and c.endswith("**") for c in rows[0])
    assert not any("**" in c for row in rows[1:] for c in row)
    assert "Best: **moco-v2**" in md
    header = next(line for line in md.splitlines() if line.startswith("| Source"))
    assert header.rstrip(" |").endswith("Published accuracy")
    by_source = {row[0].strip("*"): row for row in rows}
    assert set(by_source) == set(SOURCE_NAMES)
    for source in SOURCE_NAMES:
        assert by_source[source][-1].strip("*") == f"{get_source(source).published.accuracy:.4f}"
        ev = report.evaluations[source]
        assert by_source[source][1].strip("*") == f"{ev.metrics['accuracy']:.4f}"
    assert by_source["moco-v1"][-2] == report.evaluations["moco-v1"].result.model.weights_sha256[:12]
    assert by_source["imagenet"][-2] == "stand-in"


def test_notes_name_the_stand_ins_and_say_nothing_about_test_selection_on_val(ten):
    report = build_report(ten)
    stand_in_note = next(n for n in report.notes if "STAND-IN" in n)
    named = set(re.findall(r"[a-z0-9-]+", stand_in_note.split(":", 1)[1]))
    assert named >= set(SOURCE_NAMES) - {"moco-v1"} and "moco-v1" not in named
    assert not any("test split" in n for n in report.notes)
    assert "Recipe: recommended." in report.notes and "Dataset version: v5." in report.notes


def test_sources_left_out_for_want_of_weights_are_named_in_every_format():
    note = skipped_sources_note(["inat2021-supervised", "inat2021-mini-swav-1k"])
    assert "inat2021-supervised, inat2021-mini-swav-1k" in note and "skip_missing_weights=true" in note
    report = build_report([_evaluation("imagenet", 18)], [note])
    assert note in report.notes and note in report.markdown() and note in report.text()
    assert html.escape(note) in report.html()


def test_paper_selection_on_test_is_called_optimistic():
    report = build_report([_evaluation("imagenet", 18, split="test", recipe="paper", stand_in=False)])
    note = next(n for n in report.notes if "test split" in n)
    assert "optimistic" in note
    assert not any("STAND-IN" in n for n in report.notes)
    assert note in report.markdown() and note in report.text()


def test_html_highlights_the_best_row_and_embeds_the_roc_plot(ten):
    html = build_report(ten).html()
    assert html.count('class="best"') == 1
    assert re.search(r'<tr class="best"><td>moco-v2</td>', html)
    for source in SOURCE_NAMES:
        assert f"<td>{source}</td>" in html
    assert html.count("<tr>") + html.count('<tr class="best">') == 11  # header and ten rows
    assert '<img alt="ROC curves" src="data:image/png;base64,' in html


def test_text_marks_the_best_line(ten):
    text = build_report(ten).text()
    best_lines = [line for line in text.splitlines() if "<- best" in line]
    assert len(best_lines) == 1 and best_lines[0].startswith("moco-v2 ")
    for source in SOURCE_NAMES:
        assert re.search(rf"^{re.escape(source)}\s", text, re.MULTILINE)


def test_html_is_self_contained_for_the_kfp_ui(ten):
    # The KFP UI shows an HTML artifact in a sandboxed iframe (srcdoc, allow-scripts only): anything fetched
    # from elsewhere (a stylesheet, a script, an image URL) would not load there.
    html = build_report(ten).html()
    assert not re.search(r"<(link|script)\b|\b(src|href)=\"(?!data:|#)", html), html


def test_write_gives_txt_md_html_and_csv(ten, tmp_path):
    report = build_report(ten)
    paths = report.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.txt", "report.md", "report.html", "results.csv"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())
    assert paths["md"].read_text() == report.markdown()
    assert paths["html"].read_text() == report.html()
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["source"] for r in rows] == [r.source for r in report.rows]
    assert float(rows[0]["accuracy"]) == pytest.approx(report.best.metrics["accuracy"])
    assert rows[0]["n"] == str(N_TEST)
    assert {r["source"]: r["stand_in"] for r in rows}["moco-v1"] == "False"


def test_a_source_given_twice_is_refused():
    with pytest.raises(CxrtlError, match="two results for weight source 'chexpert'"):
        build_report([_evaluation("chexpert", 15), _evaluation("imagenet", 16), _evaluation("chexpert", 17)])


def test_repeats_rank_sources_by_their_mean_and_show_the_spread_and_each_seeds_interval():
    """chexpert is better on average (17, 17, 16 right); moco-v2 has the single best seed (19, 12, 12)."""
    evaluations = [
        *(_evaluation("chexpert", c, seed=s) for s, c in ((3, 17), (4, 17), (5, 16))),
        *(_evaluation("moco-v2", c, seed=s) for s, c in ((3, 19), (4, 12), (5, 12))),
    ]
    report = build_report(evaluations)
    assert [r.source for r in report.rows] == ["chexpert", "moco-v2"]
    best = report.rows[0]
    assert best.seeds == [3, 4, 5]
    assert best.metrics["accuracy"] == pytest.approx((17 + 17 + 16) / 60)
    assert best.accuracy_sd == pytest.approx(np.std([0.85, 0.85, 0.80], ddof=1))
    head, rows = report.table()
    column = head.index("Accuracy across seeds: mean ± SD [each seed (95% CI)]")
    assert rows[0][column].startswith("0.8333 ± 0.0289 over 3 seeds [seed 3: 0.8500 (0.640-0.948); seed 4:")
    assert any("several seeds on one shared split" in note for note in report.notes)
    # The champion candidate is one model: the best seed of the best source, not moco-v2's lucky seed.
    candidate = champion_candidate(evaluations, "accuracy")
    assert (candidate.result.model.source, candidate.result.model.config.seed) == ("chexpert", 3)
    with pytest.raises(CxrtlError, match="two results for weight source 'chexpert' with training seed 4"):
        build_report([*evaluations, _evaluation("chexpert", 10, seed=4)])


def test_one_seed_per_source_keeps_the_table_as_it_was(ten):
    head, _ = build_report(ten).table()
    assert not any("seeds" in h for h in head)


def test_no_results_is_refused():
    with pytest.raises(CxrtlError, match="no evaluation results"):
        build_report([])


def _write_folder(folder: Path, ev: Evaluation) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(ev.result.to_dict()))
    (folder / "roc.json").write_text(json.dumps(ev.roc))
    return folder


def test_cli_report_prints_the_table_and_writes_the_files(tmp_path, capsys):
    folders = [_write_folder(tmp_path / "eval" / s, _evaluation(s, c)) for s, c in (("chexpert", 14), ("imagenet", 18))]
    out = tmp_path / "report"
    assert main(["report", "--results", *map(str, folders), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    best = next(line for line in printed.splitlines() if "<- best" in line)
    assert best.startswith("imagenet ")
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "report.txt", "results.csv"]
    assert (out / "report.txt").read_text().strip() == printed.strip()


def test_cli_report_on_a_folder_without_results_is_one_error_line(tmp_path, capsys):
    good = _write_folder(tmp_path / "eval" / "imagenet", _evaluation("imagenet", 18))
    empty = tmp_path / "eval" / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    refused(
        capsys, ["report", "--results", str(good), str(empty), "--out", str(out)], naming=[str(empty)], nothing_at=[out]
    )
