"""One table comparing the weight sources, like the study's results table: terminal, Markdown, HTML, CSV."""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from cxrtl import data_checks
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, load_evaluation
from cxrtl.files import staged_folder
from cxrtl.metrics import METRIC_NAMES
from cxrtl.repeats import by_source
from cxrtl.store import Store, keys
from cxrtl.weights import get_source

logger = logging.getLogger(__name__)

_HEADERS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}


# The files of a report, by format; a run's are also in the store under keys.report_key(run_id, NAME).
REPORT_FILES = {"txt": "report.txt", "md": "report.md", "html": "report.html", "csv": "results.csv"}


@dataclass
class Row:
    source: str
    metrics: dict[str, float]  # the mean over the training seeds
    accuracy_ci: tuple[float, float]  # with several seeds, the best seed's
    n: int
    best_epoch: int | None  # of the best seed
    stand_in: bool
    weights_sha256: str
    published_accuracy: float
    seeds: list[int] = field(default_factory=list)
    seed_accuracies: list[tuple[float, tuple[float, float]]] = field(default_factory=list)  # per seed: value, CI
    accuracy_sd: float = math.nan  # over the seeds

    def accuracy_across_seeds(self) -> str:
        """Mean ± SD over the seeds, and each seed's accuracy with its interval; "-" with one seed."""
        if len(self.seeds) < 2:
            return "-"
        each = "; ".join(
            f"seed {seed}: {_fmt(value)} ({_ci(ci)})"
            for seed, (value, ci) in zip(self.seeds, self.seed_accuracies, strict=True)
        )
        return f"{self.metrics['accuracy']:.4f} ± {self.accuracy_sd:.4f} over {len(self.seeds)} seeds [{each}]"


@dataclass
class Report:
    rows: list[Row]  # best first
    notes: list[str] = field(default_factory=list)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)

    @property
    def best(self) -> Row:
        return self.rows[0]

    def collections(self) -> tuple[list[str], list[list[str]]] | None:
        """The best model's test images and accuracy per collection; None without metadata."""
        return data_checks.collection_table(self.evaluations[self.best.source]) if self.evaluations else None

    def text(self) -> str:
        header = ["source", *METRIC_NAMES, "epoch", "weights"]
        lines = [header] + [
            [r.source, *(_fmt(r.metrics[m]) for m in METRIC_NAMES), str(r.best_epoch or "-"), _weights(r)]
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        out[2] += "   <- best"
        table = self.collections()
        by_collection = (
            ["", "By collection (test split):", *("  ".join(row) for row in [table[0], *table[1]])] if table else []
        )
        return "\n".join([*out, "", *self.notes, *by_collection])

    @property
    def repeated(self) -> bool:
        return any(len(r.seeds) > 1 for r in self.rows)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The header and the rows (best first) of the Markdown and HTML tables; with several training seeds
        the metrics are means over them, beside a column of the spread and each seed's interval."""
        seeds = ["Accuracy across seeds: mean ± SD [each seed (95% CI)]"] if self.repeated else []
        head = [
            "Source",
            *(_HEADERS[m] for m in METRIC_NAMES),
            "Accuracy 95% CI" + (" (best seed)" if self.repeated else ""),
            *seeds,
            "Best epoch",
            "Weights",
            "Published accuracy",
        ]
        rows = [
            [
                r.source,
                *(_fmt(r.metrics[m]) for m in METRIC_NAMES),
                _ci(r.accuracy_ci),
                *([r.accuracy_across_seeds()] if self.repeated else []),
                str(r.best_epoch or "-"),
                _weights(r),
                _fmt(r.published_accuracy),
            ]
            for r in self.rows
        ]
        return head, rows

    def markdown(self) -> str:
        head, rows = self.table()
        lines = ["# Weight sources compared", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, cells in enumerate(rows):
            if i == 0:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Best: **{self.best.source}**. Test images: {self.best.n}. COVID is the positive class.", ""]
        lines += [f"- {note}" for note in self.notes]
        table = self.collections()
        if table:
            lines += ["", "## Test images by collection", "", "| " + " | ".join(table[0]) + " |"]
            lines += ["|" + "---|" * len(table[0]), *("| " + " | ".join(row) + " |" for row in table[1])]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head, rows = self.table()
        body = []
        for i, cells in enumerate(rows):
            cls = ' class="best"' if i == 0 else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        table = self.collections()
        by_collection = (
            "<h2>Test images by collection</h2><table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in table[0])
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1])
            + "</tbody></table>"
            if table
            else ""
        )
        plot = _roc_png(self.evaluations)
        img = f'<img alt="ROC curves" src="data:image/png;base64,{plot}">' if plot else ""
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cxrtl: weight sources compared</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .35em .7em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.best {{ background: #e6f4ea; font-weight: bold; }}
</style></head><body>
<h1>Weight sources compared</h1>
<p>Best: <strong>{html.escape(self.best.source)}</strong>. Test images: {self.best.n}.
COVID is the positive class.</p>
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
<ul>{notes}</ul>
{by_collection}
{img}
</body></html>
"""

    def write(self, out_dir: Path) -> dict[str, Path]:
        names = REPORT_FILES
        with staged_folder(out_dir, marker=names["md"]) as staged:
            (staged / names["txt"]).write_text(self.text() + "\n")
            (staged / names["md"]).write_text(self.markdown())
            (staged / names["html"]).write_text(self.html())
            with open(staged / names["csv"], "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["source", *METRIC_NAMES, "n", "best_epoch", "stand_in", "weights_sha256"])
                for r in self.rows:
                    writer.writerow(
                        [
                            r.source,
                            *(r.metrics[m] for m in METRIC_NAMES),
                            r.n,
                            r.best_epoch,
                            r.stand_in,
                            r.weights_sha256,
                        ]
                    )
        return {kind: out_dir / name for kind, name in names.items()}


def build_report(evaluations: list[Evaluation], extra_notes: list[str] | None = None) -> Report:
    if not evaluations:
        raise CxrtlError("no evaluation results to report")
    rows, best_of = [], {}
    for group in by_source(evaluations, "accuracy"):
        best = group.best("accuracy")
        model = best.result.model
        best_of[group.source] = best
        rows.append(
            Row(
                source=group.source,
                metrics=group.mean(),
                accuracy_ci=tuple(best.result.intervals_95["accuracy"]),
                n=best.result.n,
                best_epoch=model.best_epoch,
                stand_in=model.weights_stand_in,
                weights_sha256=model.weights_sha256,
                published_accuracy=get_source(group.source).published.accuracy,
                seeds=group.seeds,
                seed_accuracies=[
                    (ev.metrics["accuracy"], tuple(ev.result.intervals_95["accuracy"])) for ev in group.evaluations
                ],
                accuracy_sd=group.sd("accuracy"),
            )
        )
    return Report(rows, _notes(evaluations) + data_checks.notes(best_of) + list(extra_notes or []), best_of)


def report_from_folders(
    folders: list[Path],
    out_dir: Path,
    store: Store | None = None,
    run_id: str = "",
    extra_notes: list[str] | None = None,
) -> Report:
    """Build the report from ``cxrtl evaluate`` output folders and write it to ``out_dir`` (and the store)."""
    report = build_report([load_evaluation(f) for f in folders], extra_notes)
    paths = report.write(out_dir)
    if store is not None and run_id:
        for path in paths.values():
            store.put_file(keys.report_key(run_id, path.name), path)
    return report


def skipped_sources_note(skipped: list[str]) -> str:
    return (
        f"Not trained, for want of verified weights in the store (skip_missing_weights=true): {', '.join(skipped)}. "
        "Put their files into the store with `cxrtl weights fetch` / `cxrtl weights put` to include them."
    )


def _notes(evaluations: list[Evaluation]) -> list[str]:
    models = [ev.result.model for ev in evaluations]
    notes = [f"Recipe: {', '.join(sorted({m.config.recipe for m in models}))}."]
    if len({m.config.seed for m in models}) > 1:
        notes.append(
            "Each source was trained with several seeds on one shared split: its metrics are means over them and "
            "sources are ranked by the mean; the ROC curve and the champion candidate are the best seed of each."
        )
    if any(m.selection_split == "test" for m in models):
        notes.append(
            "The best epoch was chosen on the test split, as the study did: these test metrics are optimistic. "
            "The recommended recipe chooses on a validation split instead."
        )
    stand_ins = sorted({m.source for m in models if m.weights_stand_in})
    if stand_ins:
        notes.append(
            f"Trained from STAND-IN weights (random, in the native checkpoint format), not the published ones: "
            f"{', '.join(stand_ins)}. Their numbers say nothing about those sources."
        )
    versions = {str(m.dataset.version) for m in models}
    notes.append(f"Dataset version: {', '.join(sorted(versions))}.")
    return notes


def _roc_png(evaluations: dict[str, Evaluation]) -> str:
    curves = {s: ev.roc for s, ev in evaluations.items() if ev.roc.get("fpr")}
    if not curves:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    for source, roc in sorted(curves.items()):
        auc = evaluations[source].metrics["roc_auc"]
        ax.plot(roc["fpr"], roc["tpr"], label=f"{source} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, test split (COVID positive)")
    ax.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _ci(interval: tuple[float, float]) -> str:
    return "-" if any(math.isnan(v) for v in interval) else f"{interval[0]:.3f}-{interval[1]:.3f}"


def _weights(row: Row) -> str:
    return "stand-in" if row.stand_in else (row.weights_sha256[:12] or "?")
