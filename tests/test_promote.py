"""Champion/challenger: promotion picks the better of two models, refuses a worse one, and writes a model card."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cxrtl import __version__, champion
from cxrtl.champion import MODEL_FILES
from cxrtl.data import PreparedData
from cxrtl.demo_data import write_demo_dataset
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, evaluate
from cxrtl.ingest import ingest
from cxrtl.metrics import binary_metrics, json_safe
from cxrtl.preprocess import preprocess
from cxrtl.promote import Challenger, ChampionScore, Decision, card_markdown, decide, model_card, paired_test, promote
from cxrtl.recipes import TrainConfig
from cxrtl.selection import first_champion_floor, promotion_level
from cxrtl.store import LocalStore, keys
from cxrtl.train import train
from cxrtl.weights import put_weights, write_stand_in

GOOD, POOR = "test-promote-good", "test-promote-poor"


pytestmark = pytest.mark.slow  # trains and evaluates two models


@dataclass
class Models:
    store: LocalStore
    data_dir: Path
    root: Path
    good: Evaluation
    poor: Evaluation

    def champion_key(self, name: str) -> str:
        """Where the current champion's file ``name`` is, as its pointer says."""
        return champion.current(self.store).key(name)

    def champion_run(self) -> str:
        return self.store.get_json(self.champion_key("card.json"))["run_id"]

    def champion_sha256(self) -> str:
        current = champion.current(self.store)
        assert self.store.sha256(current.key("model.pt")) == current.pointer.files["model.pt"]
        return current.pointer.files["model.pt"]

    def model_sha256(self, run_id: str) -> str:
        return self.store.sha256(f"models/imagenet/{run_id}/model.pt")

    def install_without_floor(self, evaluation: Evaluation) -> None:
        """Make ``evaluation``'s model the first champion as promotion installs one, without the first-champion
        floor (which a near-chance model rightly fails): the champion a better challenger must beat."""
        model = evaluation.result.model
        challenger = Challenger(model.source, model.run_id, model.config.seed, evaluation.metrics["accuracy"])
        decision = Decision(True, "installed by the test without the floor", "accuracy", 0.005, challenger, None)
        files = {name: keys.model_key(model.source, model.run_id, name) for name in MODEL_FILES}
        files = {name: key for name, key in files.items() if self.store.exists(key)}
        card = model_card(evaluation, decision)
        champion.install(
            self.store, model.run_id, model.source, files, card, card_markdown(card), decision.to_dict(), None
        )
        assert self.champion_run() == model.run_id


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Iterator[Models]:
    """Two models of the same network on the same 32 px data: one trained to learn the demo classes, one
    trained one epoch at lr 1e-7 so that it keeps its random head (near chance). Both evaluated on one split."""
    root = tmp_path_factory.mktemp("promote")
    # 100 per class: the test split holds more than the 30 unseen images a decision needs.
    ingest(str(write_demo_dataset(root / "demo", per_class=100, seed=1, image_size=64)), root / "raw")
    data_dir = root / "data"
    preprocess(root / "raw", data_dir, recipe="recommended", image_size=32)
    store = LocalStore(root / "store")
    put_weights(store, "imagenet", write_stand_in("imagenet", root / "imagenet.pth"), stand_in=True)

    evaluations = {}
    settings_of = {GOOD: {"epochs": 3, "learning_rate": 1e-3}, POOR: {"epochs": 1, "learning_rate": 1e-7}}
    for run_id, settings in settings_of.items():
        config = TrainConfig.from_recipe("recommended", batch_size=16, device="cpu", **settings)
        train(data_dir, "imagenet", root / run_id, config, store, run_id)
        evaluations[run_id] = evaluate(data_dir, root / run_id, root / f"eval-{run_id}", store=store, device="cpu")
    yield Models(store, data_dir, root, evaluations[GOOD], evaluations[POOR])
    shutil.rmtree(root)


@pytest.fixture
def fresh(models: Models) -> Models:
    """The models with no champion in the store."""
    for key in models.store.list("champion/"):
        models.store.delete(key)
    return models


def test_the_two_models_differ_clearly(models):
    good, poor = models.good.metrics["accuracy"], models.poor.metrics["accuracy"]
    assert good >= 0.9 and poor <= 0.7, (good, poor)  # the premise of the tests below


def test_with_no_champion_the_better_of_two_is_promoted(fresh):
    decision = promote(fresh.store, fresh.data_dir, [fresh.poor, fresh.good])
    assert decision.promoted and decision.champion is None
    assert decision.challenger == Challenger("imagenet", GOOD, 0, fresh.good.metrics["accuracy"])
    assert "no champion" in decision.reason
    assert fresh.champion_run() == GOOD
    assert fresh.champion_sha256() == fresh.model_sha256(GOOD)
    assert fresh.store.get_json(fresh.champion_key("model.json"))["run_id"] == GOOD
    assert fresh.store.list("champion/history/") == [f"champion/history/{GOOD}.json"]


def test_a_worse_challenger_is_refused_and_the_champion_stays(fresh):
    assert promote(fresh.store, fresh.data_dir, [fresh.good]).promoted
    card_before = fresh.store.get_json(fresh.champion_key("card.json"))

    decision = promote(fresh.store, fresh.data_dir, [fresh.poor], metric="accuracy", margin=0.005)
    assert not decision.promoted
    # The champion is scored again, on the test images neither model has seen: here all of this split's.
    n = fresh.good.result.n
    assert decision.champion == ChampionScore("imagenet", GOOD, n, pytest.approx(fresh.good.metrics["accuracy"]))
    assert decision.test.name == "McNemar exact" and decision.test.images == n
    for part in (
        "accuracy",
        f"{fresh.poor.metrics['accuracy']:.4f}",
        f"{fresh.good.metrics['accuracy']:.4f}",
        "0.005",
        "imagenet",
        f"run {GOOD}",
        f"on the {n} test images neither has seen",
        "not better by more than the margin",
    ):
        assert part in decision.reason, part
    assert decision.note().startswith("Promotion: imagenet not promoted: ")
    assert fresh.store.get_json(fresh.champion_key("card.json")) == card_before
    assert fresh.champion_sha256() == fresh.model_sha256(GOOD)
    assert fresh.store.list("champion/history/") == [f"champion/history/{GOOD}.json"]


def test_a_better_challenger_replaces_the_champion(fresh):
    fresh.install_without_floor(fresh.poor)
    assert fresh.champion_run() == POOR

    decision = promote(fresh.store, fresh.data_dir, [fresh.good])
    assert decision.promoted
    assert decision.champion.run_id == POOR
    assert decision.champion.score == pytest.approx(fresh.poor.metrics["accuracy"])
    assert "better by more than 0.005 and by the paired test" in decision.reason and f"run {POOR}" in decision.reason
    assert decision.test.p_value < 0.05
    assert fresh.champion_run() == GOOD and fresh.champion_sha256() == fresh.model_sha256(GOOD)
    assert fresh.store.list("champion/history/") == [f"champion/history/{run}.json" for run in (GOOD, POOR)]


def test_the_margin_is_respected(fresh):
    fresh.install_without_floor(fresh.poor)
    gain = fresh.good.metrics["accuracy"] - fresh.poor.metrics["accuracy"]

    refused = promote(fresh.store, fresh.data_dir, [fresh.good], margin=gain + 0.01)
    assert not refused.promoted and f"by more than the margin {gain + 0.01}" in refused.reason
    assert fresh.champion_run() == POOR

    assert promote(fresh.store, fresh.data_dir, [fresh.good], margin=gain - 0.01).promoted
    assert fresh.champion_run() == GOOD
    # Equal is not better: the champion itself as challenger is refused (another margin: decided anew).
    assert not promote(fresh.store, fresh.data_dir, [fresh.good]).promoted


def test_another_metric_can_decide(fresh):
    assert promote(fresh.store, fresh.data_dir, [fresh.good], metric="roc_auc").promoted
    decision = promote(fresh.store, fresh.data_dir, [fresh.poor], metric="roc_auc", margin=0.0)
    assert decision.metric == "roc_auc" and "roc_auc" in decision.reason
    assert decision.promoted == (fresh.poor.metrics["roc_auc"] > fresh.good.metrics["roc_auc"])
    assert Decision.from_json(decision.to_json()) == decision


def test_model_card_records_what_the_model_is(fresh):
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    decision = promote(fresh.store, fresh.data_dir, [fresh.good])
    card = fresh.store.get_json(fresh.champion_key("card.json"))
    model = fresh.good.result.model
    dataset = PreparedData.load(fresh.data_dir).info.dataset
    assert card["source"] == "imagenet" and card["run_id"] == GOOD
    assert (
        card["weights_sha256"]
        == model.weights_sha256
        == fresh.store.get_json("weights/imagenet/current.json")["sha256"]
    )
    assert card["weights_stand_in"] is True
    assert card["dataset"] == {k: dataset[k] for k in ("slug", "version", "sha256")}
    assert card["metrics"] == fresh.good.metrics
    assert card["intervals_95"] == json_safe(fresh.good.result.intervals_95)  # not estimable: null
    assert card["test_images"] == fresh.good.result.n
    assert card["recipe"] == "recommended" and card["selection_split"] == "val"
    assert card["code_version"] == __version__
    assert started <= card["promoted_at"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert card["promotion"] == {
        "metric": "accuracy",
        "margin": 0.005,
        "reason": decision.reason,
        "test": None,
        "p_value": None,
        "images": None,
    }
    assert fresh.store.get_json(f"champion/history/{GOOD}.json") == card

    md = fresh.store.get_bytes(fresh.champion_key("card.md")).decode()
    for part in (
        "imagenet",
        card["weights_sha256"],
        "STAND-IN",
        dataset["version"],
        dataset["sha256"],
        f"cxrtl {__version__}",
        card["promoted_at"],
        decision.reason,
    ):
        assert part in md, part
    low, high = card["intervals_95"]["accuracy"]
    assert f"| accuracy | {card['metrics']['accuracy']:.4f} | {low:.3f}-{high:.3f} |" in md
    for name in card["metrics"]:
        assert f"| {name} | " in md


def test_a_champion_that_cannot_be_scored_on_the_new_split_is_kept(fresh):
    fresh.install_without_floor(fresh.poor)
    bigger = fresh.root / "data-64"
    if not bigger.exists():
        preprocess(fresh.root / "raw", bigger, recipe="recommended", image_size=64)
    decision = promote(fresh.store, bigger, [fresh.good])
    assert not decision.promoted
    assert "could not be scored" in decision.reason and "32 px" in decision.reason
    assert fresh.champion_run() == POOR


def test_bad_promotion_settings_are_refused(fresh):
    with pytest.raises(CxrtlError, match="promotion metric must be one of"):
        promote(fresh.store, fresh.data_dir, [fresh.good], metric="auc")
    with pytest.raises(CxrtlError, match="no evaluated models"):
        promote(fresh.store, fresh.data_dir, [])
    assert fresh.store.list("champion/") == []


def test_card_json_is_plain_json(fresh):
    promote(fresh.store, fresh.data_dir, [fresh.good])
    text = (fresh.store.root / fresh.champion_key("card.json")).read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"card.json holds {name}"))


def test_the_card_records_the_paired_test_and_the_images(fresh):
    fresh.install_without_floor(fresh.poor)
    decision = promote(fresh.store, fresh.data_dir, [fresh.good])
    promotion = fresh.store.get_json(fresh.champion_key("card.json"))["promotion"]
    assert promotion["test"] == "McNemar exact" and promotion["images"] == fresh.good.result.n
    assert promotion["p_value"] == decision.test.p_value < 0.05
    md = fresh.store.get_bytes(fresh.champion_key("card.md")).decode()
    assert f"McNemar exact, p = {promotion['p_value']:.3g} on {promotion['images']} test images neither" in md
    assert fresh.store.exists(fresh.champion_key("seen.json"))


def test_below_the_minimum_of_unseen_images_there_is_no_decision(fresh):
    fresh.install_without_floor(fresh.poor)
    n = fresh.good.result.n
    decision = promote(fresh.store, fresh.data_dir, [fresh.good], min_images=n + 1)
    assert not decision.promoted and decision.test is None
    assert f"only {n} of the {n} test images were seen by neither model, fewer than the {n + 1}" in decision.reason
    assert fresh.champion_run() == POOR


def test_a_champion_is_never_scored_on_images_it_trained_or_chose_its_epoch_on(fresh, tmp_path):
    """A champion from the paper recipe (a seeded split; the best epoch chosen on its test split) has seen every
    image of the balanced demo data. The old rule scored it on this run's test split, all images it had seen,
    and decided on that; now it is compared on none of them, and no decision is made."""
    paper = fresh.root / "data-paper"
    if not paper.exists():
        preprocess(fresh.root / "raw", paper, recipe="paper", image_size=32, seed=3)
    config = TrainConfig.from_recipe("paper", epochs=1, batch_size=16, device="cpu")
    train(paper, "imagenet", tmp_path / "model", config, fresh.store, "test-promote-paper")
    paper_eval = evaluate(paper, tmp_path / "model", tmp_path / "eval", store=fresh.store, device="cpu")
    fresh.install_without_floor(paper_eval)  # one epoch of the paper recipe: near chance, below the floor

    test = PreparedData.load(fresh.data_dir)
    seen = json.loads(fresh.store.get_bytes(fresh.champion_key("seen.json")))
    seen_by_champion = set(seen["trained"]) | set(seen["selected"])
    overlap = sum(test.hashes[i] in seen_by_champion for i in test.indices("test"))
    assert overlap == len(test.indices("test"))  # every test image of this run was the champion's
    decision = promote(fresh.store, fresh.data_dir, [fresh.good])
    assert not decision.promoted and decision.champion.images == 0
    assert "only 0 of the" in decision.reason
    with pytest.raises(CxrtlError, match="was trained on"):
        evaluate(fresh.data_dir, tmp_path / "model", tmp_path / "eval-again", device="cpu")


def test_equally_good_models_are_not_promoted_by_chance():
    """Pairs of equally good, independent models (98 % right on the study's 1,447 test images): the old rule
    (better by more than 0.005) promotes many challengers; better by the margin and by the paired test, few."""
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 724)[:1447]
    old = new = 0
    trials = 300
    for _ in range(trials):
        right = rng.random((2, len(y))) < 0.98
        p_challenger, p_champion = (np.where(r, y, 1 - y).astype(float) for r in right)
        challenger, champion = right.mean(axis=1)
        old += challenger > champion + 0.005
        new += decide("accuracy", 0.005, challenger, champion, paired_test("accuracy", y, p_challenger, p_champion))[0]
    assert old / trials > 0.1 and new / trials < 0.05, (old, new)


def test_a_lead_beyond_the_margin_that_the_paired_test_does_not_confirm_is_refused():
    """950 vs 960 of 1,000 right: 30 images only the challenger gets right, 20 only the champion (p = 0.20)."""
    y = np.ones(1000, dtype=int)
    champion = np.r_[np.ones(930), np.zeros(30), np.ones(20), np.zeros(20)]
    challenger = np.r_[np.ones(930), np.ones(30), np.zeros(20), np.zeros(20)]
    test = paired_test("accuracy", y, challenger, champion)
    assert test["name"] == "McNemar exact" and test["p_value"] == pytest.approx(0.2026, abs=1e-3)
    promoted, reason = decide("accuracy", 0.005, challenger.mean(), champion.mean(), test)
    assert not promoted and "paired test does not tell them apart" in reason
    assert decide("accuracy", 0.005, 0.96, 0.95, {"name": "McNemar exact", "p_value": 0.01})[0]


def _hopeless_result(result):
    """``result`` as if on 8 test images (4 COVID) every one were called COVID, the Normal ones most surely:
    accuracy 0.5, specificity 0, ROC AUC 0.125."""
    y = np.r_[np.ones(4, int), np.zeros(4, int)]
    p = np.array([0.6, 0.76, 0.8, 0.55, 0.9, 0.95, 0.85, 0.75])
    m = binary_metrics(y, p)
    assert (m["metrics"]["accuracy"], m["metrics"]["specificity"], m["metrics"]["roc_auc"]) == (0.5, 0.0, 0.125)
    return dataclasses.replace(result, n=8, metrics=m["metrics"], intervals_95=m["intervals_95"])


def test_a_hopeless_first_model_is_not_made_the_first_champion(fresh):
    hopeless = dataclasses.replace(fresh.good, result=_hopeless_result(fresh.good.result))
    decision = promote(fresh.store, fresh.data_dir, [hopeless])
    assert not decision.promoted and decision.champion is None
    assert "there was no champion" in decision.reason and "no champion: the first champion must have" in decision.reason
    assert "balanced_accuracy 95 % interval" in decision.reason
    assert champion.current(fresh.store) is None  # only the decision is recorded, so that a retry gives it again
    assert fresh.store.list("champion/") == [f"champion/decisions/{GOOD}.json"]


def test_the_first_champion_floor_needs_both_lower_bounds_above_chance():
    ok, why = first_champion_floor({"balanced_accuracy": [0.51, 0.9], "roc_auc": [0.6, 0.99]})
    assert ok and "above the floor" in why
    assert not first_champion_floor({"balanced_accuracy": [0.51, 0.9], "roc_auc": [0.5, 0.99]})[0]
    assert not first_champion_floor({"balanced_accuracy": [0.49, 0.9], "roc_auc": [0.9, 0.99]})[0]
    nan = float("nan")
    assert not first_champion_floor({"balanced_accuracy": [nan, nan], "roc_auc": [0.9, 0.99]})[0]


def test_the_challenger_chosen_from_many_is_tested_at_a_lower_level():
    """Chosen as the best of 10, a challenger needs p < 0.005 where one alone needs p < 0.05."""
    test = {"name": "McNemar exact", "p_value": 0.01}
    assert promotion_level(1) == 0.05 and promotion_level(10) == pytest.approx(0.005)
    assert decide("accuracy", 0.005, 0.96, 0.95, test, promotion_level(1))[0]
    promoted, reason = decide("accuracy", 0.005, 0.96, 0.95, test, promotion_level(10))
    assert not promoted and "at level 0.005" in reason
