"""The store layout: the layout cxrtl/store/keys.py documents, the keys its functions build and the keys
written out here are the same, line for line; and its parsers read back what its builders write."""

from __future__ import annotations

from cxrtl.store import keys

SHA = "ab" * 32

# The layout as it is documented, each key next to the call that builds it.
LAYOUT = {
    "weights/SOURCE/SHA256.pth": keys.weights_key("SOURCE", "SHA256"),
    "weights/SOURCE/SHA256.json": keys.weights_record_key("SOURCE", "SHA256"),
    "weights/SOURCE/current.json": keys.current_weights_key("SOURCE"),
    "datasets/DATASET/VERSION/archive.zip": keys.dataset_key("DATASET", "VERSION", "archive.zip"),
    "datasets/DATASET/VERSION/ingest.json": keys.dataset_key("DATASET", "VERSION", "ingest.json"),
    "trainings/SOURCE/TRAINING/identity.json": keys.training_record_key("SOURCE", "TRAINING", "identity.json"),
    "trainings/SOURCE/TRAINING/owner.json": keys.training_record_key("SOURCE", "TRAINING", "owner.json"),
    "trainings/SOURCE/TRAINING/checkpoints/epoch-NNN.pt": keys.checkpoint_key("SOURCE", "TRAINING", 123).replace(
        "123", "NNN"
    ),
    "trainings/SOURCE/TRAINING/best-epoch-NNN.pt": keys.best_checkpoint_key("SOURCE", "TRAINING", 123).replace(
        "123", "NNN"
    ),
    "trainings/SOURCE/TRAINING/done.json": keys.training_record_key("SOURCE", "TRAINING", "done.json"),
    "runs/RUN_ID/SOURCE/identity.json": keys.run_identity_key("RUN_ID", "SOURCE"),
    "runs/RUN_ID/SOURCE/failed.json": keys.failure_key("RUN_ID", "SOURCE"),
    "prepared/RUN_ID/NAME": keys.prepared_prefix("RUN_ID") + "NAME",
    "models/SOURCE/RUN_ID/NAME": keys.model_key("SOURCE", "RUN_ID", "NAME"),
    "reports/RUN_ID/NAME": keys.report_key("RUN_ID", "NAME"),
    "predictions/RUN_ID/NAME": keys.predictions_key("RUN_ID", "NAME"),
    "champion/current.json": keys.champion_pointer_key(),
    "champion/versions/RUN_ID/SOURCE/NAME": keys.champion_version_key("RUN_ID", "SOURCE", "NAME"),
    "champion/decisions/RUN_ID.json": keys.champion_decision_key("RUN_ID"),
    "champion/history/RUN_ID.json": keys.champion_history_key("RUN_ID"),
    "champion/NAME": keys.champion_key("NAME"),
    "state/last-success.json": keys.last_success_key(),
    "state/runs/RUN_ID.json": keys.pending_run_key("RUN_ID"),
    "state/conditional-write-probes/HEX": keys.conditional_write_probe_key("HEX"),
}


def _documented() -> list[str]:
    """The first column of the layout block in the module's doc (continuation lines are indented deeper)."""
    block = keys.__doc__.split("::", 1)[1].split("\n\n")[1]
    return [line.split()[0] for line in block.splitlines() if line.startswith("    ") and line[4] != " "]


def test_the_documented_layout_is_the_one_the_functions_build():
    assert _documented() == list(LAYOUT)
    for documented, built in LAYOUT.items():
        assert built == documented


def test_keys_with_values():
    assert keys.weights_key("moco-v2", SHA) == f"weights/moco-v2/{SHA}.pth"
    assert keys.checkpoint_key("imagenet", "t1", 7) == "trainings/imagenet/t1/checkpoints/epoch-007.pt"
    assert keys.checkpoint_key("imagenet", "t1", 1234) == "trainings/imagenet/t1/checkpoints/epoch-1234.pt"
    assert (
        keys.dataset_key("covid", "sha256:5bd68f5b6e21", "archive.zip")
        == "datasets/covid/sha256-5bd68f5b6e21/archive.zip"
    )


def test_prefixes_list_exactly_their_keys():
    assert keys.checkpoint_key("imagenet", "t1", 7).startswith(keys.checkpoints_prefix("imagenet", "t1"))
    assert keys.best_checkpoint_key("imagenet", "t1", 7).startswith(keys.best_checkpoints_prefix("imagenet", "t1"))
    assert not keys.checkpoint_key("imagenet", "t1", 7).startswith(keys.best_checkpoints_prefix("imagenet", "t1"))
    for key in (keys.checkpoint_key("imagenet", "t1", 7), keys.best_checkpoint_key("imagenet", "t1", 7)):
        assert key.startswith(keys.training_prefix("imagenet", "t1"))
        assert not key.startswith(keys.training_prefix("imagenet", "t1x"))
        assert key.startswith(keys.trainings_prefix())
    assert keys.failure_key("r1", "imagenet").startswith(keys.run_prefix("r1", "imagenet"))
    assert keys.model_key("imagenet", "r1", "model.pt").startswith(keys.model_prefix("imagenet", "r1"))
    assert keys.weights_key("imagenet", SHA).startswith(keys.weights_prefix())


def test_parsers_read_back_what_the_builders_write():
    assert keys.parse_weights_key(keys.weights_key("moco-v2", SHA)) == ("moco-v2", SHA)
    for other in (keys.weights_record_key("moco-v2", SHA), keys.current_weights_key("moco-v2"), "weights/a/b/c.pth"):
        assert keys.parse_weights_key(other) is None, other
    assert keys.checkpoint_epoch(keys.checkpoint_key("imagenet", "t1", 12)) == 12
    assert keys.checkpoint_epoch(keys.best_checkpoint_key("imagenet", "t1", 1000)) == 1000
    for other in ("trainings/i/t1/checkpoints/epoch-1.pt", "trainings/i/t1/checkpoints/epoch-001.pt.part", "x"):
        assert keys.checkpoint_epoch(other) is None, other
