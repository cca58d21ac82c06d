"""Champion/challenger: a run's best model replaces the current champion only when it is really better."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, evaluate
from cxrtl.records import ChampionCard, Promotion
from cxrtl.repeats import champion_candidate
from cxrtl.settings import check_setting
from cxrtl.store import Store, keys
from cxrtl.train import METADATA_FILE, MODEL_FILE

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "card.md"


@dataclass
class Decision:
    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger: dict[str, Any]
    champion: dict[str, Any] | None  # the champion before this decision, scored on this run's test split

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        return cls(**json.loads(text))

    def note(self) -> str:
        verdict = "promoted to champion" if self.promoted else "not promoted"
        return f"Promotion: {self.challenger['source']} {verdict}: {self.reason}"


def promote(
    store: Store,
    data_dir: Path,
    candidates: list[Evaluation],
    metric: str = "accuracy",
    margin: float = 0.005,
) -> Decision:
    """Promote the run's best model if its test ``metric`` beats the champion's on the same split by > ``margin``."""
    check_setting("promotion_metric", metric, "promotion metric")
    check_setting("promotion_margin", margin, "promotion margin")
    # With several training seeds per source: the best seed of the source with the best mean.
    best = champion_candidate(candidates, metric)
    model = best.result.model
    challenger = {
        "source": model.source,
        "run_id": model.run_id,
        "seed": model.config.seed,
        "score": best.metrics[metric],
    }

    champion = _score_champion(store, data_dir, metric)
    if champion is None:
        promoted, reason = True, f"there was no champion; {metric} {challenger['score']:.4f}"
    elif "error" in champion:
        promoted, reason = False, f"the champion could not be scored on this test split ({champion['error']})"
    elif challenger["score"] > champion["score"] + margin:
        promoted = True
        reason = (
            f"{metric} {challenger['score']:.4f} beats the champion's {champion['score']:.4f} "
            f"({champion['source']}, run {champion['run_id']}) by more than {margin}"
        )
    else:
        promoted = False
        reason = (
            f"{metric} {challenger['score']:.4f} does not beat the champion's {champion['score']:.4f} "
            f"({champion['source']}, run {champion['run_id']}) by more than {margin}"
        )
    decision = Decision(promoted, reason, metric, margin, challenger, champion)
    if promoted:
        _install(store, best, decision)
    logger.info("%s", decision.note())
    return decision


def _score_champion(store: Store, data_dir: Path, metric: str) -> dict[str, Any] | None:
    # The card is written last: without it there is no complete champion.
    card_key = keys.champion_key(CARD_FILE)
    if not store.exists(card_key):
        return None
    card = ChampionCard.from_dict(store.get_json(card_key), f"{store.url}: {card_key}")
    with tempfile.TemporaryDirectory(prefix="cxrtl-champion-") as tmp:
        model_dir = Path(tmp) / "model"
        store.get_file(keys.champion_key(MODEL_FILE), model_dir / MODEL_FILE)
        try:
            score = evaluate(data_dir, model_dir, Path(tmp) / "eval").metrics[metric]
        except CxrtlError as exc:
            return {"source": card.source, "run_id": card.run_id, "error": str(exc)}
    return {"source": card.source, "run_id": card.run_id, "score": score}


def _install(store: Store, best: Evaluation, decision: Decision) -> None:
    model = best.result.model
    with tempfile.TemporaryDirectory(prefix="cxrtl-promote-") as tmp:
        for name in (MODEL_FILE, METADATA_FILE):
            store.get_file(keys.model_key(model.source, model.run_id, name), Path(tmp) / name)
        card = model_card(best, decision)
        # The card goes last: a champion is only complete once its card says so.
        for name in (MODEL_FILE, METADATA_FILE):
            store.put_file(keys.champion_key(name), Path(tmp) / name)
    store.put_bytes(keys.champion_key(CARD_MARKDOWN_FILE), card_markdown(card).encode())
    store.put_json(keys.champion_key(CARD_FILE), card.to_dict())
    store.put_json(keys.champion_history_key(model.run_id), card.to_dict())


def model_card(best: Evaluation, decision: Decision) -> ChampionCard:
    promotion = Promotion(decision.metric, decision.margin, decision.reason)
    return ChampionCard.of(best.result, promotion, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def card_markdown(card: ChampionCard) -> str:
    lines = [
        f"# Model card: ResNet50 from {card.source}",
        "",
        "COVID-19 vs Normal chest X-ray classifier (COVID positive); research use only, not a medical device.",
        "",
        f"- Weight source: {card.source} ({card.source_description}), sha256 {card.weights_sha256}"
        + (" (STAND-IN weights)" if card.weights_stand_in else ""),
        f"- Data: {json.dumps(asdict(card.dataset), sort_keys=True)}",
        f"- Recipe: {card.recipe}; best epoch {card.best_epoch} chosen on the {card.selection_split} split",
        f"- Run: {card.run_id}; code cxrtl {card.code_version}; promoted {card.promoted_at}",
        f"- Promotion: {card.promotion.reason}",
        "",
        f"| metric (n = {card.test_images}) | value | 95% CI |",
        "|---|---|---|",
    ]
    for name, value in card.metrics.items():
        low, high = card.intervals_95.get(name, (math.nan, math.nan))
        ci = "-" if math.isnan(low) or math.isnan(high) else f"{low:.3f}-{high:.3f}"
        lines.append(f"| {name} | {'-' if math.isnan(value) else f'{value:.4f}'} | {ci} |")
    return "\n".join(lines) + "\n"
