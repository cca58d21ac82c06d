"""What the report says about the data behind the numbers: duplicates, collections, the lungs masked out.

Evaluate writes these findings into each model's ``checks.json`` (:data:`cxrtl.evaluate.CHECKS_FILE`,
:class:`cxrtl.records.DataChecks`);
this module turns them into the report's notes and its class x collection table.
"""

from __future__ import annotations

from typing import Any

from cxrtl.data import CLASS_NAMES
from cxrtl.evaluate import Evaluation

_MOSTLY = 0.7  # the share of a class's test images from one collection that the report points out


def notes(best_of: dict[str, Evaluation]) -> list[str]:
    """Notes on duplicates, collections and the masked evaluation, from each source's reported model."""
    found = [ev.checks for ev in best_of.values() if ev.checks]
    if not found:
        return []
    out = []
    duplicates = found[0].duplicates
    if duplicates:
        out.append(
            f"Duplicates: preprocessing found {duplicates.exact_duplicate_groups} group(s) of exact duplicates "
            f"and {duplicates.near_duplicate_groups} of near-duplicates ({duplicates.images_in_duplicate_groups}"
            f" of {duplicates.images} images); each group was kept within one split."
            + (
                f" {duplicates.groups_with_both_classes} group(s) hold both COVID and Normal images."
                if duplicates.groups_with_both_classes
                else ""
            )
        )
    if found[0].collections is None:
        out.append(
            "No breakdown by collection: the dataset's metadata was missing or unusable (see the preprocess log)."
        )
    else:
        single = [
            f"{name} ({share:.0%} from {collection})"
            for name, (collection, share) in _main_collection(found[0].collections).items()
            if share >= _MOSTLY
        ]
        if single:
            out.append(
                "Test images of one class come mostly from one collection: "
                + ", ".join(single)
                + ". A model may learn the collection rather than the disease; see the table by collection."
            )
    # seen_test_images (trained on, or chose the epoch on) where evaluate counted it; older results have only one.
    trained_on = {
        s: n
        for s, ev in best_of.items()
        if ev.checks and (n := ev.checks.seen_test_images or ev.checks.trained_on_test_images)
    }
    if trained_on:
        out.append(
            "WARNING: scored on test images they were trained on or chose their epoch on, so their metrics look "
            "better than they are: "
            + ", ".join(f"{s} ({n} of {best_of[s].result.n})" for s, n in sorted(trained_on.items()))
            + "."
        )
    masked = {source: ev.checks.masked for source, ev in best_of.items() if ev.checks and ev.checks.masked}
    if masked:
        flagged = sorted(s for s, m in masked.items() if m.flagged)
        scores = ", ".join(f"{s} {m.balanced_accuracy:.3f}" for s, m in sorted(masked.items()))
        out.append(f"With the lungs blacked out (masked evaluation), balanced accuracy: {scores}.")
        if flagged:
            threshold = masked[flagged[0]].flag_at
            out.append(
                f"SHORTCUT WARNING: {', '.join(flagged)} still reach a balanced accuracy of {threshold} or more with "
                "the lungs blacked out: the model may be reading something other than the lungs."
            )
    return out


def collection_table(evaluation: Evaluation) -> tuple[list[str], list[list[str]]] | None:
    """Test images per collection and class, and ``evaluation``'s accuracy on each; None without metadata."""
    table = evaluation.checks.collections if evaluation.checks else None
    if not table:
        return None
    head = ["Collection", *CLASS_NAMES, "Test images", f"Accuracy ({evaluation.result.model.source})"]
    rows = [
        [collection, *(str(row[name]) for name in CLASS_NAMES), str(row["n"]), f"{row['accuracy']:.4f}"]
        for collection, row in sorted(table.items())
    ]
    return head, rows


def _main_collection(table: dict[str, dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """Per class: the collection most of its test images come from, and that share."""
    out = {}
    for name in CLASS_NAMES:
        counts = {collection: row[name] for collection, row in table.items()}
        total = sum(counts.values())
        if total:
            collection = max(counts, key=counts.get)
            out[name] = (collection, counts[collection] / total)
    return out
