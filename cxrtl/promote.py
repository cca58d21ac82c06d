"""Champion/challenger: a run's best model replaces the current champion only when it is really better."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from cxrtl import champion as champions
from cxrtl.champion import MODEL_FILES, Champion
from cxrtl.data import PreparedData
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, score_images
from cxrtl.metrics import binary_metrics
from cxrtl.records import ChampionCard, Promotion, Record, _nan
from cxrtl.repeats import champion_candidate
from cxrtl.seen import SEEN_FILE, Seen, seen_in
from cxrtl.selection import decide, first_champion_floor, paired_test, promotion_level
from cxrtl.settings import check_setting
from cxrtl.store import Store, keys
from cxrtl.train import MODEL_FILE

logger = logging.getLogger(__name__)


# At least this many test images that neither the champion nor the challenger has seen, or no decision: with
# fewer, McNemar's exact test can only call a difference of about 20 points significant (6 discordant images,
# all one way, give p = 0.031), and no difference of practical interest.
MIN_UNSEEN_IMAGES = 30


@dataclass(frozen=True)
class Challenger:
    """The run's best model, and its score on the promotion metric over its own test split."""

    source: str
    run_id: str
    seed: int
    score: float


@dataclass(frozen=True)
class ChampionScore:
    """The champion before the decision, and, where it was scored, its score on the test images neither model has
    seen and how many there were."""

    source: str
    run_id: str
    images: int | None = None
    score: float | None = None


@dataclass(frozen=True)
class PairedTest:
    """The paired test of challenger against champion on the images neither has seen."""

    name: str
    p_value: float
    alpha: float
    images: int


@dataclass(frozen=True)
class Decision(Record):
    """Whether the run's best model became the champion, and why: what promote hands the report step."""

    KIND: ClassVar[str] = "promotion decision"
    # 2: typed; version 1 was the same fields, unversioned, with plain objects inside
    SCHEMA_VERSION: ClassVar[int] = 2

    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger: Challenger
    champion: ChampionScore | None  # None without one
    test: PairedTest | None = None  # None when none was run

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "the promotion decision") -> Decision:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CxrtlError(f"{where}: not JSON ({exc})") from None
        return cls.from_dict(data, where)

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        return {"test": None, **values}

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        challenger, champion, test = values["challenger"], values["champion"], values["test"]
        return {
            **values,
            "challenger": Challenger(**{**challenger, "score": _nan(challenger["score"])}),
            "champion": None if champion is None else ChampionScore(**champion),
            "test": None if test is None else PairedTest(**{**test, "p_value": _nan(test["p_value"])}),
        }

    def note(self) -> str:
        verdict = "promoted to champion" if self.promoted else "not promoted"
        return f"Promotion: {self.challenger.source} {verdict}: {self.reason}"


def promote(
    store: Store,
    data_dir: Path,
    candidates: list[Evaluation],
    metric: str = "accuracy",
    margin: float = 0.005,
    min_images: int = MIN_UNSEEN_IMAGES,
) -> Decision:
    """Make the run's best model the champion if it is better than the current one on test images neither has
    seen: by more than ``margin`` on ``metric`` (a minimum practical difference) and by a paired test at
    :data:`cxrtl.compare.ALPHA` divided by the number of candidates (McNemar's exact test; DeLong's for ROC AUC;
    :mod:`cxrtl.selection` says why). Fewer than ``min_images`` such images: no decision, the champion stays.
    With no champion, the best becomes the first only above :func:`cxrtl.selection.first_champion_floor`.

    The run's best is the best seed of the first source of :func:`cxrtl.compare.ranking` by its mean over the
    training seeds (:mod:`cxrtl.repeats`; ties broken explicitly, never by the order given). Only metrics where
    higher is better decide (cxrtl.settings: promotion_metric).
    """
    check_setting("promotion_metric", metric, "promotion metric")
    check_setting("promotion_margin", margin, "promotion margin")
    best = champion_candidate(candidates, metric)
    model = best.result.model
    if math.isnan(best.metrics[metric]):
        why = best.result.undefined.get(metric, "not computable")
        raise CxrtlError(f"promotion metric {metric} is undefined for every model of run {model.run_id} ({why})")
    # Idempotent per run: a retry (after a crash at any point) returns the decision already made.
    recorded = champions.recorded_decision(store, model.run_id, model.source)
    if recorded is not None:
        decision = Decision.from_dict(recorded, f"{store.url}: {keys.champion_decision_key(model.run_id)}")
        if (decision.metric, decision.margin) == (metric, margin):
            logger.info("run %s was decided already: %s", model.run_id, decision.note())
            return decision
        logger.info("run %s was decided on %s with margin %s before: deciding again", model.run_id, metric, margin)
    challenger = Challenger(model.source, model.run_id, model.config.seed, best.metrics[metric])

    champion = champions.current_for_update(store)
    if champion is None:
        promoted, floor = first_champion_floor(best.result.intervals_95)
        reason = f"there was no champion; {metric} {challenger.score:.4f}; {floor}"
        decision = Decision(promoted, reason, metric, margin, challenger, None)
    else:
        card = champions.read_card(store, champion)
        decision = _compare(
            store, data_dir, best, champion, card, metric, margin, min_images, challenger, len(candidates)
        )
    if decision.promoted:
        decision = _install(store, best, decision, champion)
    champions.record_decision(store, model.run_id, decision.to_dict())
    logger.info("%s", decision.note())
    return decision


def _compare(
    store: Store,
    data_dir: Path,
    best: Evaluation,
    current: Champion,
    card: ChampionCard,
    metric: str,
    margin: float,
    min_images: int,
    challenger: Challenger,
    candidates: int,
) -> Decision:
    """Score champion and challenger on the test images neither has seen, and decide."""
    model = best.result.model
    champion = ChampionScore(card.source, card.run_id)

    def refuse(why: str) -> Decision:
        return Decision(False, why, metric, margin, challenger, champion)

    data = PreparedData.load(data_dir)
    test = data.indices("test")
    with tempfile.TemporaryDirectory(prefix="cxrtl-champion-") as tmp:
        folders = {"champion": Path(tmp) / "champion", "challenger": Path(tmp) / "challenger"}
        for name in (MODEL_FILE, SEEN_FILE):
            if name in current.pointer.files:
                store.get_file(current.key(name), folders["champion"] / name)
            if store.exists(keys.model_key(model.source, model.run_id, name)):
                store.get_file(keys.model_key(model.source, model.run_id, name), folders["challenger"] / name)
        seen = {who: Seen.read(folder / SEEN_FILE) for who, folder in folders.items()}
        unknown = [who for who, record in seen.items() if record is None]
        if unknown or data.hashes is None:
            return refuse(
                f"no record of the images the {' and the '.join(unknown) or 'data'} "
                f"{'has' if len(unknown) < 2 else 'have'} seen (made before cxrtl kept one), so they cannot be "
                "compared fairly; the champion stays"
            )
        unseen = test[~seen_in(data, test, seen["champion"].any | seen["challenger"].any)]
        champion = replace(champion, images=len(unseen))
        if len(unseen) < min_images:
            return refuse(
                f"only {len(unseen)} of the {len(test)} test images were seen by neither model, fewer than the "
                f"{min_images} a decision needs; the champion stays"
            )
        try:
            p = {who: score_images(folder, data, unseen) for who, folder in folders.items()}
        except CxrtlError as exc:
            return refuse(f"the champion could not be scored on this test split ({exc})")
    y = data.labels[unseen]
    scores = {who: binary_metrics(y, p[who])["metrics"][metric] for who in p}
    champion = replace(champion, score=scores["champion"])
    challenger_score = scores["challenger"]
    test_result = paired_test(metric, y, p["challenger"], p["champion"])
    level = promotion_level(candidates)
    decision = decide(metric, margin, challenger_score, champion.score, test_result, level)
    where = (
        f"on the {len(unseen)} test images neither has seen ({test_result['name']} p = {test_result['p_value']:.3g}, "
        f"level {level:.3g} for the best of {candidates} candidates)"
    )
    promoted, reason = decision
    return Decision(
        promoted,
        f"{metric} {challenger_score:.4f} against the champion's {champion.score:.4f} ({card.source}, run "
        f"{card.run_id}) {where}: {reason}",
        metric,
        margin,
        challenger,
        champion,
        PairedTest(test_result["name"], test_result["p_value"], level, len(unseen)),
    )


def _install(store: Store, best: Evaluation, decision: Decision, expected: Champion | None) -> Decision:
    """Make the model the champion, from ``expected`` (the champion it was compared with); the decision as it
    stands afterwards: not promoted when another promotion moved the champion first."""
    model = best.result.model
    # A champion without the record of what it has seen could never be compared fairly again.
    files = {
        name: keys.model_key(model.source, model.run_id, name)
        for name in MODEL_FILES
        if store.exists(keys.model_key(model.source, model.run_id, name))
    }
    card = model_card(best, decision)
    after = champions.install(
        store, model.run_id, model.source, files, card, card_markdown(card), decision.to_dict(), expected
    )
    if after is not None and after.names(model.run_id, model.source):
        return decision
    winner = after.describe() if after is not None else "no champion"
    return replace(
        decision,
        promoted=False,
        reason=f"another promotion changed the champion (now {winner}) while this one was deciding; the "
        f"champion stays, and the next run compares with it (this run's decision was: {decision.reason})",
    )


def model_card(best: Evaluation, decision: Decision) -> ChampionCard:
    test = decision.test
    promotion = Promotion(
        decision.metric,
        decision.margin,
        decision.reason,
        test.name if test else None,
        test.p_value if test else None,
        test.images if test else None,
    )
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
        *([f"- Trained in image {card.image}"] if card.image else []),
        f"- Promotion: {card.promotion.reason}",
        "",
        f"| metric (n = {card.test_images}) | value | 95% CI | interval |",
        "|---|---|---|---|",
    ]
    for name, value in card.metrics.items():
        low, high = card.intervals_95.get(name, (math.nan, math.nan))
        ci = "-" if math.isnan(low) or math.isnan(high) else f"{low:.3f}-{high:.3f}"
        shown = f"undefined: {card.undefined.get(name, 'not computable')}" if math.isnan(value) else f"{value:.4f}"
        lines.append(f"| {name} | {shown} | {ci} | {card.interval_methods.get(name, '-')} |")
    if card.promotion.test:
        lines += [
            "",
            f"Paired test against the champion before: {card.promotion.test}, p = {card.promotion.p_value:.3g} on "
            f"{card.promotion.images} test images neither model had seen.",
        ]
    return "\n".join(lines) + "\n"
