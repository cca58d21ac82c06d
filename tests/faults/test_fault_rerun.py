"""Issue 25, a run id reused: the same run id and settings on another dataset, after the first run finished,
silently replaced that run's stored model. Now the stored model's identity (dataset version and sha256, image
size, recipe, settings, weight sha256, cxrtl version) is checked before training, and a difference refused
in one line naming it."""

from __future__ import annotations

import json
import shutil

import pytest

from cxrtl.errors import CxrtlError
from cxrtl.recipes import TrainConfig
from cxrtl.train import train

pytestmark = pytest.mark.faults

RUN_ID = "rerun-other-data"


@pytest.mark.slow
def test_a_finished_run_id_is_not_retrained_on_another_dataset(stand_in_store, prepared, tmp_path):
    config = TrainConfig.from_recipe("paper", epochs=1, batch_size=8, checkpoint_minutes=60, device="cpu")
    train(prepared["paper"], "imagenet", tmp_path / "first", config, stand_in_store, RUN_ID)
    stored_key = f"models/imagenet/{RUN_ID}/model.json"
    stored = stand_in_store.get_json(stored_key)

    other = tmp_path / "other-data"
    shutil.copytree(prepared["paper"], other)
    info = json.loads((other / "info.json").read_text())
    theirs = info["dataset"]["sha256"]
    info["dataset"]["sha256"] = "0" * 64  # another release of the dataset, in every other way the same
    (other / "info.json").write_text(json.dumps(info))
    with pytest.raises(CxrtlError) as refused:
        train(other, "imagenet", tmp_path / "second", config, stand_in_store, RUN_ID)
    line = str(refused.value)
    # Refused at the run's recorded identity (cxrtl.checkpoints), before the stored model's own check.
    assert "\n" not in line and f"run {RUN_ID}" in line and "dataset.sha256" in line
    assert repr(theirs) in line and repr("0" * 64) in line and "start a new run id" in line
    assert stand_in_store.get_json(stored_key) == stored and not (tmp_path / "second").exists()

    # The same data again is the same run: trained again, nothing refused.
    train(prepared["paper"], "imagenet", tmp_path / "again", config, stand_in_store, RUN_ID)
    for key in stand_in_store.list(f"models/imagenet/{RUN_ID}/") + stand_in_store.list(f"runs/{RUN_ID}/"):
        stand_in_store.delete(key)
