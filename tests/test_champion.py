"""The champion's versions and pointer: the old layout read and moved, a damaged champion found before a run
trains (in one line naming the command that resets it), `cxrtl champion verify` and `cxrtl champion reset`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from champion_models import SOURCE, card_of, model_files, stored_model
from refusal import one_error_line

from cxrtl import champion
from cxrtl.cli import main
from cxrtl.errors import CxrtlError
from cxrtl.promote import ChampionScore, Decision, promote
from cxrtl.retrain import check_for_changes
from cxrtl.store import LocalStore, keys


@pytest.fixture
def two_champions(tmp_path: Path) -> LocalStore:
    """run-a promoted first, then run-b over it."""
    store = LocalStore(tmp_path / "store")
    assert promote(store, tmp_path, [stored_model(store, "run-a")]).promoted
    before = champion.current(store)
    model = stored_model(store, "run-b")
    decision = {"champion": {"run_id": "run-a", "source": SOURCE}, "promoted": True}
    after = champion.install(store, "run-b", SOURCE, model_files("run-b"), card_of(model), "card", decision, before)
    assert after.names("run-b", SOURCE)
    return store


def version_key(run_id: str, name: str) -> str:
    return keys.champion_version_key(run_id, SOURCE, name)


DAMAGE = {
    "changed": lambda store: (store.root / version_key("run-b", "model.pt")).write_bytes(b"flipped bits"),
    "missing file": lambda store: store.delete(version_key("run-b", "model.json")),
    "missing version": lambda store: [
        store.delete(key) for key in store.list(keys.champion_version_prefix("run-b", SOURCE))
    ],
}
NAMED = {
    "changed": "champion/versions/run-b/imagenet/model.pt fails its sha256 check",
    "missing file": "champion/versions/run-b/imagenet/model.json is missing",
    "missing version": "champion/versions/run-b/imagenet/card.json is missing",
}


def test_an_intact_champion_verifies_and_a_run_goes_on(two_champions, capsys):
    assert main(["champion", "verify", "--store", two_champions.url]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{SOURCE} from run run-b: 6 files verified")
    assert check_for_changes(two_champions, {"x": 1}, "run-c").changed


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_champion_stops_a_run_before_training_and_reset_goes_back(two_champions, damage, capsys):
    store = two_champions
    DAMAGE[damage](store)
    with pytest.raises(champion.ChampionDamaged) as caught:
        check_for_changes(store, {"x": 1}, "run-c")
    line = str(caught.value)
    assert "\n" not in line and NAMED[damage] in line
    assert f"`cxrtl champion reset --store {store.url}`" in line
    assert not store.exists(keys.pending_run_key("run-c"))  # nothing written for a run that cannot go on

    assert main(["champion", "verify", "--store", store.url]) == 1
    out = capsys.readouterr().out
    assert f"damaged: {NAMED[damage]}" in out and "cxrtl champion reset" in out

    assert main(["champion", "reset", "--store", store.url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"the champion in {store.url} is {SOURCE} from run run-a again (was {SOURCE} from run run-b)"
    )
    assert champion.current(store).names("run-a", SOURCE)
    assert main(["champion", "verify", "--store", store.url]) == 0


def test_reset_to_none_and_when_the_one_before_is_damaged_too(two_champions, capsys):
    store = two_champions
    store.delete(version_key("run-a", "model.pt"))
    DAMAGE["changed"](store)
    assert main(["champion", "reset", "--store", store.url]) == 0
    assert "no champion" in capsys.readouterr().out
    assert champion.current(store) is None
    check_for_changes(store, {"x": 1}, "run-c")  # no champion is not damage
    assert main(["champion", "reset", "--store", store.url, "--none"]) == 0
    assert "nothing to reset" in capsys.readouterr().out


def test_a_damaged_pointer_is_named(two_champions, capsys):
    store = two_champions
    (store.root / keys.champion_pointer_key()).write_text("{}")
    status = main(["champion", "verify", "--store", store.url])
    assert status == 1 and "damaged: " in capsys.readouterr().out
    with pytest.raises(champion.ChampionDamaged, match=r"champion/current\.json fails its sha256 check"):
        champion.check(store)
    assert main(["champion", "reset", "--store", store.url]) == 0
    assert champion.current(store) is None


def test_the_old_layout_is_read_and_moved_into_a_version_by_the_next_promotion(tmp_path):
    store = LocalStore(tmp_path / "store")
    model = stored_model(store, "run-old")
    for name, key in model_files("run-old").items():
        store.copy(key, keys.champion_key(name))
    store.put_bytes(keys.champion_key("card.md"), b"# old card")
    store.put_json(keys.champion_key("card.json"), card_of(model).to_dict())

    old = champion.current(store)
    assert old.legacy and old.names("run-old", SOURCE) is False and old.pointer.run_id == "run-old"
    assert old.key("model.pt") == "champion/model.pt"
    champion.check(store)  # verified as it is, and nothing written: reading never moves it
    assert not store.exists(keys.champion_pointer_key())

    moved = champion.current_for_update(store)
    assert moved.names("run-old", SOURCE) and moved.pointer.files == old.pointer.files
    assert store.list("champion/") == sorted(
        [keys.champion_pointer_key()] + [version_key("run-old", name) for name in old.pointer.files]
    )
    champion.check(store)


def test_a_damaged_old_layout_champion_is_found_too(tmp_path):
    store = LocalStore(tmp_path / "store")
    model = stored_model(store, "run-old")
    store.put_json(keys.champion_key("card.json"), card_of(model).to_dict())
    with pytest.raises(champion.ChampionDamaged, match=r"champion/model\.pt is missing"):
        champion.check(store)


def test_verify_of_an_unknown_store_option_is_one_line(tmp_path, capsys):
    status = main(["champion", "verify", "--bogus"])
    one_error_line(status, capsys.readouterr().err, naming=["--bogus"])


OLD_DECISION = {  # what promote handed the report step before the decision was a versioned record
    "promoted": False,
    "reason": "not better",
    "metric": "accuracy",
    "margin": 0.005,
    "challenger": {"source": SOURCE, "run_id": "run-b", "seed": 0, "score": None},
    "champion": {"source": SOURCE, "run_id": "run-a"},
    "test": None,
}


def test_a_decision_is_a_typed_record_and_an_old_one_still_reads():
    old = Decision.from_json(json.dumps(OLD_DECISION))
    assert old.challenger.source == SOURCE and math.isnan(old.challenger.score)
    assert old.champion == ChampionScore(SOURCE, "run-a") and old.test is None
    again = Decision.from_json(old.to_json())
    assert again.champion == old.champion and again.reason == old.reason
    assert json.loads(old.to_json())["schema_version"] == Decision.SCHEMA_VERSION == 2
    with pytest.raises(CxrtlError, match=r"^the promotion decision: damaged promotion decision \(unknown field"):
        Decision.from_json(json.dumps({**OLD_DECISION, "extra": 1}))
