"""The weight sources compared: every metric with its 95 % interval, the sources tied for best, the paired tests
between them, and the study's published figures where the run is comparable. Terminal, Markdown, HTML, CSV.

The figures' data is on :attr:`Report.evaluations`: per source, ``.predictions`` (ids, y_true, p_covid),
``.roc``, ``.result`` (metrics, intervals_95, interval_methods, undefined, confusion, at_validation_threshold,
``model.history`` per epoch).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxrtl import RESEARCH_ONLY, data_checks
from cxrtl.compare import ALPHA, PairTest, pair_tests, ranking, tied_for_best
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import METRICS_FILE, PREDICTIONS_FILE, Evaluation, load_evaluation
from cxrtl.files import staged_folder
from cxrtl.gradcam import GradCamSet
from cxrtl.html_page import Banner, Facts, Link, Notes, Page, Section, Table
from cxrtl.ingest import DEMO_SLUG
from cxrtl.metrics import METRIC_LABELS, METRIC_NAMES, THRESHOLD_METRICS
from cxrtl.recipes import get_recipe
from cxrtl.records import AtThreshold, EvaluationResult, ModelSummary
from cxrtl.repeats import SourceResults, by_source
from cxrtl.report_figures import figure_sections, read_gradcam
from cxrtl.store import Store, keys
from cxrtl.train import METADATA_FILE, MODEL_FILE
from cxrtl.weights import PublishedMetrics, get_source

logger = logging.getLogger(__name__)

RANK_METRIC = "accuracy"  # the study's ranking
# Each source's files the report links to, as the store keeps them beside the model (cxrtl.store.keys.model_key).
ARTEFACT_FILES = (METADATA_FILE, METRICS_FILE, PREDICTIONS_FILE, MODEL_FILE)

TEXT_METRICS = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc")
# The first table: narrow enough for a 1,400 px window with the Weights column in view; every metric follows.
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")
# Below this many test images the banner says the split is small: an interval then spans tens of points.
SMALL_TEST_SPLIT = 200
PUBLISHED = ("accuracy", "precision", "sensitivity", "f1")  # the study's four published metrics, and n
TIED = "tied for best"

# The files of a report, by format; a run's are also in the store under keys.report_key(run_id, NAME).
REPORT_FILES = {
    "txt": "report.txt",
    "md": "report.md",
    "html": "report.html",
    "csv": "results.csv",
    "pairs": "pairs.csv",
}
FIGURES_FOLDER = "figures"  # beside report.md, which links its figures there


@dataclass(frozen=True)
class Provenance:
    """Where the report's numbers come from: shown under the banner."""

    run_ids: tuple[str, ...]
    date: str  # UTC, when the report was made
    code_version: str
    datasets: tuple[str, ...]  # "slug version V"
    demo: bool  # the demo's synthetic images
    covid: int  # test images of each class
    normal: int
    kfp_run: str | None = None  # the KFP run's page, when known
    image: str | None = None  # the images the models trained in (ModelSummary.image), when recorded

    def items(self) -> list[tuple[str, str]]:
        dataset = ", ".join(self.datasets) + (" (DEMO: synthetic images, not chest X-rays)" if self.demo else "")
        return [
            ("Run", ", ".join(self.run_ids) + (f" ({self.kfp_run})" if self.kfp_run else " (no KFP run link)")),
            ("Made", f"{self.date}; code cxrtl {self.code_version}; trained in image {self.image or 'not recorded'}"),
            ("Dataset", dataset),
            ("Test images", f"{self.covid + self.normal} ({self.covid} COVID, {self.normal} Normal)"),
        ]


@dataclass
class Row:
    source: str
    evaluation: Evaluation  # with several training seeds (repeats), the best seed's
    tied_for_best: bool
    published: PublishedMetrics | None  # None where the run is not comparable with the study
    seeds: SourceResults | None = None  # every training seed's results, where there are several

    def across_seeds(self, metric: str) -> str:
        """Mean ± SD over the training seeds, and each seed's value with its interval; "-" with one seed."""
        if self.seeds is None:
            return "-"
        each = "; ".join(
            f"seed {seed}: {_cell(ev.result, metric)}"
            for seed, ev in zip(self.seeds.seeds, self.seeds.evaluations, strict=True)
        )
        mean, sd = self.seeds.mean()[metric], self.seeds.sd(metric)
        return f"{_fmt(mean)} ± {_fmt(sd)} over {len(self.seeds.seeds)} seeds [{each}]"

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.result.metrics

    @property
    def model(self) -> ModelSummary:
        return self.evaluation.result.model

    @property
    def n(self) -> int:
        return self.evaluation.result.n

    def cell(self, metric: str) -> str:
        return _cell(self.evaluation.result, metric)

    def weights(self) -> str:
        return "stand-in" if self.model.weights_stand_in else (self.model.weights_sha256[:12] or "?")

    def trained_on(self) -> str:
        model = self.model
        if model.device_name is None:
            device = "a device not recorded"
        elif model.cuda_runtime is None:
            device = model.device_name
        else:
            device = f"{model.device_name} (CUDA {model.cuda_runtime}, driver up to CUDA {model.cuda_driver or '?'})"
        return f"{device} in image {model.image}" if model.image else device


# What the table against the previous run shows of each source, the ranking metric first.
PREVIOUS_METRICS = (RANK_METRIC, "roc_auc")


@dataclass(frozen=True)
class PreviousRun:
    """The last successful run's figures (its results.csv in the store), to set beside this run's."""

    run_id: str
    metrics: dict[str, dict[str, float]]  # source: PREVIOUS_METRICS' values (NaN where undefined)


def previous_run(store: Store, run_id: str) -> PreviousRun | None:
    """The run recorded as the last success before ``run_id``, with its results; None without one (or without
    its report, which a store prune may have removed)."""
    from cxrtl.retrain import last_success

    last = last_success(store)
    key = keys.report_key(last["run_id"], REPORT_FILES["csv"]) if last and last.get("run_id") != run_id else None
    if key is None or not store.exists(key):
        return None
    rows = csv.DictReader(io.StringIO(store.get_bytes(key).decode()))
    metrics = {r["source"]: {m: float(r[m]) if r[m] else math.nan for m in PREVIOUS_METRICS} for r in rows}
    return PreviousRun(last["run_id"], metrics)


@dataclass
class Report:
    rows: list[Row]  # ranked: RANK_METRIC, then ROC AUC, then Brier, then name (cxrtl.compare.ranking)
    tests: list[PairTest]  # every pair of sources, Holm-adjusted
    rank_metric: str = RANK_METRIC
    notes: list[str] = field(default_factory=list)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by source: what the figures draw
    cams: dict[str, GradCamSet] = field(default_factory=dict)  # by source: Grad-CAM of evaluate's chosen images
    provenance: Provenance | None = None
    previous: PreviousRun | None = None  # the last successful run before this one, where the store has it

    @property
    def top(self) -> Row:
        return self.rows[0]

    @property
    def tied(self) -> list[str]:
        return [r.source for r in self.rows if r.tied_for_best]

    @property
    def comparable(self) -> bool:
        return self.rows[0].published is not None

    @property
    def repeated(self) -> bool:
        return any(r.seeds is not None for r in self.rows)

    def summary(self) -> str:
        seeds = " (the mean over the training seeds)" if self.repeated else ""
        return (
            f"Ranked by {self.rank_metric}{seeds}. {TIED.capitalize()} (not significantly worse than the first, "
            f"Holm-adjusted p >= {ALPHA}): {', '.join(self.tied) or 'none'}. Test images: {self.top.n}. "
            "COVID is the positive class."
        )

    def banner(self) -> list[str]:
        """What no reader may miss, worst first; the research-only line always."""
        lines = []
        stand_ins = [r.source for r in self.rows if r.model.weights_stand_in]
        if stand_ins:
            lines.append(
                f"STAND-IN WEIGHTS: {len(stand_ins)} of {len(self.rows)} sources were trained from random stand-in "
                "weights, not the published ones; their numbers say nothing about those sources."
            )
        p = self.provenance
        if p is not None and p.demo:
            lines.append("DEMO DATA: the images are synthetic (cxrtl's demo data), not chest X-rays.")
        if self.top.n < SMALL_TEST_SPLIT:
            by_class = f" ({p.covid} COVID, {p.normal} Normal)" if p is not None else ""
            lines.append(
                f"SMALL TEST SPLIT: {self.top.n} test images{by_class}; every interval is wide, and a difference "
                "of a few images is noise."
            )
        return [*lines, RESEARCH_ONLY]

    def title(self) -> str:
        runs = ", ".join(self.provenance.run_ids) if self.provenance else ""
        return f"Weight sources compared: run {runs}" if runs else "Weight sources compared"

    def text(self) -> str:
        """The terminal's summary: the study's metrics and ROC AUC, points only (the other formats hold them all)."""
        header = ["source", *TEXT_METRICS, "epoch", "weights"]
        out = _columns(
            [header]
            + [
                [r.source, *(_fmt3(r.metrics[m]) for m in TEXT_METRICS), str(r.model.best_epoch or "-"), r.weights()]
                for r in self.rows
            ]
        )
        for i, row in enumerate(self.rows):
            if row.tied_for_best:
                out[i + 2] += f"   <- {TIED}"
        table = data_checks.collection_table(self.top.evaluation)
        by_collection = ["", "By collection (test split):", *_columns([table[0], *table[1]])] if table else []
        more = f"Every metric with its 95 % interval, the paired tests and the figures: {REPORT_FILES['html']}."
        banner = [f"!! {line}" for line in self.banner()]
        facts = [f"{name}: {value}" for name, value in self.provenance.items()] if self.provenance else []
        devices: dict[str, list[str]] = {}
        for row in self.rows:
            devices.setdefault(row.trained_on(), []).append(row.source)
        trained = [f"Trained on {device}: {', '.join(sources)}" for device, sources in devices.items()]
        return "\n".join([*banner, *facts, "", *out, "", self.summary(), *trained, more, *self.notes, *by_collection])

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The header and the rows (ranked) of the Markdown and HTML results tables."""
        head = ["Source", "Rank", *(f"{METRIC_LABELS[m]} (95% CI)" for m in METRIC_NAMES), "Best epoch", "Weights"]
        if self.repeated:
            head[2:2] = [f"{METRIC_LABELS[self.rank_metric]} across seeds: mean ± SD [each seed (95% CI)]"]
        if self.comparable:
            head += [f"Published {METRIC_LABELS[m].lower()}" for m in PUBLISHED] + ["Published n"]
        rows = []
        for i, r in enumerate(self.rows, start=1):
            cells = [r.source, f"{i} ({TIED})" if r.tied_for_best else str(i), *(r.cell(m) for m in METRIC_NAMES)]
            if self.repeated:
                cells[2:2] = [r.across_seeds(self.rank_metric)]
            cells += [str(r.model.best_epoch or "-"), r.weights()]
            if r.published is not None:
                cells += [f"{getattr(r.published, m):.4f}" for m in PUBLISHED] + [f"{PublishedMetrics.TEST_IMAGES:,}"]
            rows.append(cells)
        return head, rows

    def summary_table(self) -> tuple[list[str], list[list[str]]]:
        """The first table: rank, weights and the main metrics with their intervals (all of them follow)."""
        head = ["Source", "Rank", "Weights", *(f"{METRIC_LABELS[m]} (95% CI)" for m in SUMMARY_METRICS), "Best epoch"]
        if self.repeated:
            head[3:3] = [f"{METRIC_LABELS[self.rank_metric]}: mean ± SD over seeds"]
        rows = []
        for i, r in enumerate(self.rows, start=1):
            cells = [r.source, f"{i} ({TIED})" if r.tied_for_best else str(i), r.weights()]
            cells += [r.cell(m) for m in SUMMARY_METRICS] + [str(r.model.best_epoch or "-")]
            if self.repeated:
                seeds = r.seeds
                cells[3:3] = [
                    "-"
                    if seeds is None
                    else f"{_fmt(seeds.mean()[self.rank_metric])} ± {_fmt(seeds.sd(self.rank_metric))}"
                ]
            rows.append(cells)
        return head, rows

    def per_class_table(self) -> tuple[list[str], list[list[str]]]:
        """Each source's precision, recall, F1 and support per class (scikit-learn's classification report)."""
        head = ["Source", "Class", "Precision", "Recall", "F1", "Support"]
        rows = []
        for r in self.rows:
            c = r.evaluation.result.confusion
            for name, tp, fp, fn in (("COVID", c["tp"], c["fp"], c["fn"]), ("Normal", c["tn"], c["fn"], c["fp"])):
                rows.append(
                    [
                        r.source,
                        name,
                        _ratio(tp, tp + fp),
                        _ratio(tp, tp + fn),
                        _ratio(2 * tp, 2 * tp + fp + fn),
                        str(tp + fn),
                    ]
                )
        return head, rows

    def previous_table(self) -> tuple[list[str], list[list[str]]] | None:
        """Each source's figures now and in the previous run; sources in either run."""
        if self.previous is None:
            return None
        now = {r.source: r.metrics for r in self.rows}
        head = ["Source"]
        for m in PREVIOUS_METRICS:
            head += [f"{METRIC_LABELS[m]} now", f"{METRIC_LABELS[m]} before"]
        rows = []
        for source in [*now, *sorted(set(self.previous.metrics) - set(now))]:
            cells = [source]
            for m in PREVIOUS_METRICS:
                cells += [_fmt(now.get(source, {}).get(m)), _fmt(self.previous.metrics.get(source, {}).get(m))]
            rows.append(cells)
        return head, rows

    def split_table(self) -> tuple[list[str], list[list[str]]] | None:
        """The prepared data's images per class in each split, as evaluate recorded them; None where it did not."""
        checks = self.top.evaluation.checks
        counts = checks.split_counts if checks else None
        if not counts:
            return None
        classes = list(next(iter(counts.values())))
        head = ["Split", *classes, "Total"]
        return head, [[split, *(str(n[c]) for c in classes), str(sum(n.values()))] for split, n in counts.items()]

    def artefacts_table(self) -> tuple[list[str], list[list[str | Link]]] | None:
        """Each source's files in the store, linked relative to where the report is kept (``reports/RUN_ID/``),
        so that the store's folder can move; None where the report is not one run's."""
        if not self.provenance or len(self.provenance.run_ids) != 1:
            return None
        here = posixpath.dirname(keys.report_key(self.provenance.run_ids[0], REPORT_FILES["html"]))
        head = ["Source", *ARTEFACT_FILES]
        rows: list[list[str | Link]] = []
        for r in self.rows:
            links = [
                Link(name, posixpath.relpath(keys.model_key(r.source, r.model.run_id, name), here))
                for name in ARTEFACT_FILES
            ]
            rows.append([r.source, *links])
        return head, rows

    def settings_table(self) -> tuple[list[str], list[list[str]]]:
        """Each source's recipe, its settings that differ from the recipe's, and its training seeds."""
        head = ["Source", "Recipe", "Overridden settings", "Seeds", "Best epoch chosen on"]
        rows = []
        for r in self.rows:
            changed = ", ".join(f"{k}={v!r}" for k, (v, _) in overrides(r.model).items()) or "none"
            seeds = ", ".join(map(str, r.seeds.seeds)) if r.seeds else str(r.model.config.seed)
            rows.append([r.source, r.model.config.recipe, changed, seeds, r.model.selection_split])
        return head, rows

    def pairs_matrix(self) -> tuple[list[str], list[list[str]]]:
        """The Holm-adjusted p of every pair, McNemar / DeLong, sources in ranked order."""
        order = [r.source for r in self.rows]
        by_pair = {frozenset((t.a, t.b)): t for t in self.tests}
        rows = []
        for a in order:
            cells = [a]
            for b in order:
                t = by_pair.get(frozenset((a, b)))
                cells.append("" if t is None else f"{_p3(t.mcnemar_holm)} / {_p3(t.delong_holm)}")
            rows.append(cells)
        return ["McNemar / DeLong (Holm)", *order], rows

    def threshold_table(self) -> tuple[list[str], list[list[str]]] | None:
        """The threshold metrics at each model's validation threshold, beside 0.5; None when no model has one."""
        rows = [r for r in self.rows if r.evaluation.result.at_validation_threshold is not None]
        if not rows:
            return None
        head = ["Source", "Threshold", *(f"{METRIC_LABELS[m]} (95% CI)" for m in THRESHOLD_METRICS)]
        body = []
        for r in rows:
            at = r.evaluation.result.at_validation_threshold
            body.append([r.source, f"{at.threshold:.4f}", *(_cell(at, m) for m in THRESHOLD_METRICS)])
        return head, body

    def pairs_table(self) -> tuple[list[str], list[list[str]]]:
        head = ["Source A", "Source B", "McNemar p", "McNemar p (Holm)", "ROC AUC A - B", "DeLong p", "DeLong p (Holm)"]
        rows = [
            [t.a, t.b, _p(t.mcnemar_p), _p(t.mcnemar_holm), _fmt(t.auc_difference), _p(t.delong_p), _p(t.delong_holm)]
            for t in self.tests
        ]
        return head, rows

    def page(self) -> Page:
        """The report as one self-contained page: the ranking and its notes, the figures (where overlap shows at
        a glance), then the tables that back them up, the paired tests last (one row per pair: long)."""
        classes = ["tied" if r.tied_for_best else None for r in self.rows]  # no single "best": all tied look alike
        ranking = Section("Ranking", [self.summary(), Table(*self.summary_table(), classes), Notes(self.notes)])
        every = Section("Every metric", ["Each value with its 95 % interval.", Table(*self.table(), classes)])
        per_class = Section("Per class", [Table(*self.per_class_table())])
        settings = Section("Settings by source", [Table(*self.settings_table())])
        splits = self.split_table()
        by_split = [Section("Split sizes by class", [Table(*splits)])] if splits else []
        artefacts = self.artefacts_table()
        about_artefacts = "Each source's files in the store, linked from this report's place there (reports/RUN_ID/)."
        files = [Section("Files", [about_artefacts, Table(*artefacts)])] if artefacts else []
        against = self.previous_table()
        before = []
        if against:
            about = (
                f"The last successful run before this one, {self.previous.run_id}, on its own test split: not a "
                "paired comparison, and a change within the 95 % intervals above says nothing."
            )
            before = [Section("Against the previous run", [about, Table(*against)])]
        sections = [ranking, every, per_class, *before, *by_split, settings, *files, *self.figure_sections()]
        threshold = self.threshold_table()
        if threshold:
            about = (
                "Youden's J on the validation split at the best epoch, applied unchanged to the test split; "
                "the ranking above is at 0.5."
            )
            sections.append(Section("At the threshold chosen on the validation split", [about, Table(*threshold)]))
        collections = data_checks.collection_table(self.top.evaluation)
        if collections:
            about = (
                f"Where the test images came from (the dataset's metadata), and {self.top.source}'s accuracy on "
                "each: a class from one collection only lets a model learn the collection."
            )
            sections.append(Section("Test images by collection", [about, Table(*collections)]))
        if self.tests:
            about = (
                "Holm-adjusted p of McNemar's exact test on which images each source gets right (at 0.5) / of "
                "DeLong's test of the ROC AUC difference, over all pairs, each test a family; unadjusted values "
                f"and AUC differences are in {REPORT_FILES['pairs']}."
            )
            sections.append(Section("Paired tests", [about, Table(*self.pairs_matrix())]))
        intro = [Banner(self.banner())]
        if self.provenance:
            intro.append(Facts(self.provenance.items()))
        return Page(self.title(), sections, intro)

    def figure_sections(self) -> list[Section]:
        order = [r.source for r in self.rows]  # colours follow the ranking
        results = {s: self.evaluations[s].result for s in order}
        scores = {s: (self.evaluations[s].predictions.y_true, self.evaluations[s].predictions.p_covid) for s in order}
        intervals = {m: {s: (r.metrics[m], *r.intervals_95[m]) for s, r in results.items()} for m in METRIC_NAMES}
        history_fields = ("selection_split", "best_epoch", "history")
        histories = {s: {k: getattr(r.model, k) for k in history_fields} for s, r in results.items()}
        cams = {s: self.cams[s] for s in order if s in self.cams}
        confusions = {s: r.confusion for s, r in results.items()}
        return figure_sections(scores, confusions, intervals, histories, cams)

    def markdown(self, embed: bool = False) -> str:
        """report.md: its figures linked as files in :data:`FIGURES_FOLDER` beside it, or embedded (``embed``,
        for a viewer that shows one file alone, such as the KFP UI)."""
        return self.page().markdown(None if embed else FIGURES_FOLDER)

    def html(self) -> str:
        return self.page().html()

    def write(self, out_dir: Path) -> dict[str, Path]:
        names = REPORT_FILES
        with staged_folder(out_dir, marker=names["md"]) as staged:
            (staged / names["txt"]).write_text(self.text() + "\n")
            page = self.page()
            (staged / names["md"]).write_text(page.markdown(FIGURES_FOLDER))
            (staged / names["html"]).write_text(page.html())
            (staged / FIGURES_FOLDER).mkdir()
            for figure in page.figures():
                (staged / FIGURES_FOLDER / figure.file_name).write_bytes(figure.png)
            _write_csv(staged / names["csv"], *self.csv_rows())
            head, rows = self.pairs_table()
            _write_csv(staged / names["pairs"], head, rows)
        return {kind: out_dir / name for kind, name in names.items()}

    def csv_rows(self) -> tuple[list[str], list[list]]:
        """results.csv: full-precision values, each metric's interval, method and why it is undefined."""
        head = ["source", "rank", "tied_for_best"]
        for m in METRIC_NAMES:
            head += [m, f"{m}_low", f"{m}_high", f"{m}_interval", f"{m}_undefined"]
        head += ["n", "best_epoch", "stand_in", "weights_sha256", "validation_threshold"]
        head += ["device_name", "cuda_runtime", "cuda_driver", "image"]
        rows = []
        for i, r in enumerate(self.rows, start=1):
            result = r.evaluation.result
            cells = [r.source, i, r.tied_for_best]
            for m in METRIC_NAMES:
                value, (low, high) = result.metrics[m], result.intervals_95[m]
                cells += [*(_csv(v) for v in (value, low, high)), result.interval_methods[m]]
                cells.append(result.undefined.get(m, ""))
            model = r.model
            cells += [r.n, model.best_epoch, model.weights_stand_in, model.weights_sha256, model.validation_threshold]
            cells += [model.device_name, model.cuda_runtime, model.cuda_driver, model.image]
            rows.append(cells)
        return head, rows


def provenance_of(evaluations: list[Evaluation], kfp_run: str | None = None) -> Provenance:
    """The report's provenance from its models' records (run ids, datasets, images) and this code."""
    from cxrtl.retrain import code_fingerprint

    models = [ev.result.model for ev in evaluations]
    y = evaluations[0].predictions.y_true
    return Provenance(
        run_ids=tuple(sorted({m.run_id for m in models})),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        code_version=code_fingerprint(),
        datasets=tuple(sorted({f"{m.dataset.slug or '?'} version {m.dataset.version or '?'}" for m in models})),
        demo=any(m.dataset.slug == DEMO_SLUG for m in models),
        covid=int((y == 1).sum()),
        normal=int((y == 0).sum()),
        kfp_run=kfp_run,
        image=", ".join(sorted({m.image for m in models if m.image})) or None,
    )


def build_report(
    evaluations: list[Evaluation],
    extra_notes: list[str] | None = None,
    rank_metric: str = RANK_METRIC,
    cams: dict[str, GradCamSet] | None = None,
    provenance: Provenance | None = None,
    previous: PreviousRun | None = None,
) -> Report:
    if not evaluations:
        raise CxrtlError("no evaluation results to report")
    # Several training seeds per source (repeats): sources ranked by their mean; the paired tests, the figures
    # and the cells are the best seed's, the champion candidate (cxrtl.repeats).
    groups = {g.source: g for g in by_source(evaluations, rank_metric)}
    best_of = {source: g.best(rank_metric) for source, g in groups.items()}
    thresholds = {ev.result.threshold for ev in evaluations}
    if len(thresholds) > 1:
        raise CxrtlError(f"results at different thresholds ({', '.join(map(str, sorted(thresholds)))}); evaluate again")
    tests = pair_tests({s: ev.predictions for s, ev in best_of.items()}, thresholds.pop())
    metrics = {s: g.mean() for s, g in groups.items()}
    order = ranking(metrics, rank_metric)
    tied = tied_for_best(order, metrics, tests, rank_metric)
    reasons = _not_comparable(evaluations)
    rows = [
        Row(
            s,
            best_of[s],
            s in tied,
            None if reasons else get_source(s).published,
            groups[s] if len(groups[s].evaluations) > 1 else None,
        )
        for s in order
    ]
    notes = _notes(evaluations, reasons) + data_checks.notes(best_of) + list(extra_notes or [])
    provenance = provenance or provenance_of(evaluations)
    return Report(rows, tests, rank_metric, notes, best_of, dict(cams or {}), provenance, previous)


def report_from_folders(
    folders: list[Path],
    out_dir: Path,
    store: Store | None = None,
    run_id: str = "",
    extra_notes: list[str] | None = None,
) -> Report:
    """Build the report from ``cxrtl evaluate`` output folders and write it to ``out_dir`` (and the store)."""
    evaluations = [load_evaluation(f) for f in folders]
    # Each source's figures are its best seed's (several with repeats).
    best = [g.best(RANK_METRIC) for g in by_source(evaluations, RANK_METRIC)]
    cams = {
        ev.result.model.source: read_gradcam(f)
        for ev, f in zip(evaluations, folders, strict=True)
        if any(ev is b for b in best)
    }
    previous = previous_run(store, run_id) if store is not None and run_id else None
    kept = {s: c for s, c in cams.items() if c is not None}
    report = build_report(evaluations, extra_notes, cams=kept, previous=previous)
    paths = report.write(out_dir)
    if store is not None and run_id:
        for path in paths.values():
            store.put_file(keys.report_key(run_id, path.name), path)
        for path in sorted((out_dir / FIGURES_FOLDER).glob("*.png")):  # report.md links them
            store.put_file(keys.report_key(run_id, f"{FIGURES_FOLDER}/{path.name}"), path)
    return report


def skipped_sources_note(skipped: list[str]) -> str:
    return (
        f"Not trained, for want of verified weights in the store (skip_missing_weights=true): {', '.join(skipped)}. "
        "Put their files into the store with `cxrtl weights fetch` / `cxrtl weights put` to include them."
    )


def overrides(model: ModelSummary) -> dict[str, tuple[object, object]]:
    """The training settings of ``model`` that differ from its recipe's: {name: (used, recipe's)}."""
    used, recipe = (
        dataclasses.asdict(model.config.training),
        dataclasses.asdict(get_recipe(model.config.recipe).training),
    )
    return {name: (used[name], recipe[name]) for name in used if used[name] != recipe[name]}


def _not_comparable(evaluations: list[Evaluation]) -> list[str]:
    """Why this run's numbers are not comparable with the study's (none: they are)."""
    reasons = []
    models = [ev.result.model for ev in evaluations]
    recipes = sorted({m.config.recipe for m in models})
    if recipes != ["paper"]:
        reasons.append(f"the recipe is {', '.join(recipes)}, not paper")
    elif any(overrides(m) for m in models):
        reasons.append("settings were overridden")
    sizes = sorted({ev.result.n for ev in evaluations})
    if sizes != [PublishedMetrics.TEST_IMAGES]:
        reasons.append(
            f"the test split has {', '.join(map(str, sizes))} images, the study's {PublishedMetrics.TEST_IMAGES:,}"
        )
    if any(m.weights_stand_in for m in models):
        reasons.append("some weights are stand-ins")
    return reasons


def _recipe_note(models: list[ModelSummary]) -> str:
    changed = {}
    for m in models:
        changed.update(
            {f"{name}={used!r} ({m.config.recipe}: {theirs!r})": None for name, (used, theirs) in overrides(m).items()}
        )
    recipes = ", ".join(sorted({m.config.recipe for m in models}))
    if changed:
        return f"Recipe: {recipes}, with settings overridden: {', '.join(changed)}."
    return f"Recipe: {recipes}."


def _notes(evaluations: list[Evaluation], not_comparable: list[str]) -> list[str]:
    models = [ev.result.model for ev in evaluations]
    notes = [_recipe_note(models)]
    if not_comparable:
        notes.append(f"The study's published figures are hidden: {'; '.join(not_comparable)}.")
    else:
        notes.append(
            f"Published: the study's accuracy, precision, sensitivity and F1 on its own split of "
            f"{PublishedMetrics.TEST_IMAGES:,} test images (not ours: its split was not seeded)."
        )
    if any(m.selection_split == "test" for m in models):
        notes.append(
            "The best epoch was chosen on the test split, as the study did: these test metrics are optimistic. "
            "The recommended recipe chooses on a validation split instead."
        )
    if len({m.config.seed for m in models}) > 1:
        notes.append(
            "Each source was trained with several seeds on one shared split: sources are ranked by their mean, "
            "with the spread over the seeds beside each seed's interval; the other cells, the figures, the paired "
            "tests and the champion candidate are the best seed of each."
        )
    stand_ins = sorted({m.source for m in models if m.weights_stand_in})
    if stand_ins:
        notes.append(
            f"Trained from STAND-IN weights (random, in the native checkpoint format), not the published ones: "
            f"{', '.join(stand_ins)}. Their numbers say nothing about those sources."
        )
    bootstrap = next((ev.result.bootstrap for ev in evaluations if ev.result.bootstrap), None)
    if bootstrap:
        notes.append(
            "Intervals (95 %, their coverage checked by simulation, `cxrtl coverage`): exact Clopper-Pearson for "
            "accuracy, sensitivity and specificity; balanced accuracy, precision and F1 from joint bounds of "
            "sensitivity and specificity; Newcombe's score interval for ROC AUC; a percentile bootstrap "
            f"({bootstrap['resamples']:,} resamples stratified by class, seed {bootstrap['seed']}) for PR AUC, "
            'Brier score and the operating points only with enough images of each class, else none ("-"); '
            f"none for ECE (over {bootstrap['ece_bins']} equal-width bins), which is biased at every size."
        )
    versions = {str(m.dataset.version) for m in models}
    notes.append(f"Dataset version: {', '.join(sorted(versions))}.")
    return notes


def _counts(confusion: dict[str, int], metric: str) -> str:
    """A proportion's count, "22/23", for the metrics that are one; "" for the others."""
    c = confusion
    fractions = {
        "accuracy": (c["tp"] + c["tn"], sum(c.values())),
        "sensitivity": (c["tp"], c["tp"] + c["fn"]),
        "specificity": (c["tn"], c["tn"] + c["fp"]),
        "precision": (c["tp"], c["tp"] + c["fp"]),
    }
    return f" {fractions[metric][0]}/{fractions[metric][1]}" if metric in fractions else ""


def _cell(result: EvaluationResult | AtThreshold, metric: str) -> str:
    """The value (three decimals; a proportion's count beside it) and its interval, or why it is undefined."""
    value, (low, high) = result.metrics[metric], result.intervals_95[metric]
    if math.isnan(value):
        return f"undefined ({result.undefined.get(metric, 'not computable')})"
    interval = "-" if math.isnan(low) or math.isnan(high) else f"{low:.3f}-{high:.3f}"
    return f"{value:.3f}{_counts(result.confusion, metric)} ({interval})"


def _fmt3(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "-"


def _p3(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _columns(lines: list[list[str]]) -> list[str]:
    """Left-aligned columns, the first line a header underlined with dashes."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _write_csv(path: Path, head: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(head)
        writer.writerows(rows)


def _csv(value: float) -> str:
    return "" if math.isnan(value) else repr(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"
