"""RunSettings, the one definition of a run's settings, and what derives from it: ``pipeline.py run``'s
options and the pipeline's arguments (the compiled parameters are checked in test_pipeline_spec)."""

from __future__ import annotations

import dataclasses
import re

import pytest

import pipeline
from cxrtl.errors import CxrtlError
from cxrtl.settings import RECIPE_VALUE, TRAIN_RUN_SETTINGS, RunSettings, check_setting, option, value_type
from runners.local import local_arguments


@pytest.mark.parametrize("settings", [RunSettings(), RunSettings.demo()], ids=["defaults", "demo"])
def test_settings_survive_the_trip_through_pipeline_parameters(settings: RunSettings):
    assert RunSettings.from_pipeline(**settings.to_pipeline()) == settings


def test_the_recipes_value_is_none_here_and_the_sentinel_in_the_pipeline():
    settings = RunSettings.from_pipeline(epochs=RECIPE_VALUE, batch_size=8, learning_rate=RECIPE_VALUE)
    assert (settings.epochs, settings.batch_size, settings.learning_rate) == (None, 8, None)
    run = {name: getattr(settings, name) for name in TRAIN_RUN_SETTINGS}  # the run's own: always set
    assert settings.training_overrides() == {"seed": 0, "batch_size": 8, **run}
    arguments = RunSettings().to_pipeline()
    assert arguments["epochs"] == arguments["learning_rate"] == RECIPE_VALUE
    # kfp.local refuses an argument whose type is not its parameter's: 0 for a float parameter is refused.
    assert all(type(arguments[f.name]) is value_type(f) for f in dataclasses.fields(RunSettings))


def test_only_what_changes_training_is_fingerprinted():
    assert set(RunSettings().fingerprint()) == {
        "sources", "recipe", "image_size", "epochs", "batch_size", "learning_rate", "seed", "repeats"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("promotion_margin", 1.0, "must be in [0, 1), got 1.0"),
        ("promotion_metric", "auc", "must be one of accuracy"),
        ("recipe", "fast", "must be one of paper, recommended, got 'fast'"),
        ("image_size", 16, "must be a whole number from 32 to 1024, got 16"),
        ("seed", -1, "must be 0 or more, got -1"),
        ("repeats", 0, "must be positive, got 0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting_or_the_given_label(name: str, value, message: str):
    with pytest.raises(CxrtlError, match=f"^{re.escape(f'{name} {message}')}"):
        RunSettings(**{name: value})
    with pytest.raises(CxrtlError, match=rf"^{option(name)} "):
        check_setting(name, value, option(name))


def test_pipeline_run_has_an_option_per_setting_with_its_help(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")  # each help text on one line, after its option or on the next
    with pytest.raises(SystemExit):
        pipeline.main(["run", "--help"])
    usage = capsys.readouterr().out
    for f in dataclasses.fields(RunSettings):
        assert re.search(rf"^  {option(f.name)}\b[^\n]*\s+{re.escape(f.metadata['help'])}$", usage, re.M), f.name


@pytest.mark.parametrize(("flags", "expected"), [(["--demo"], RunSettings.demo()), ([], RunSettings())])
def test_pipeline_run_passes_the_demo_values_or_the_defaults(flags: list[str], expected: RunSettings):
    args = pipeline.build_parser().parse_args(["run", *flags, "--dataset-source", "kaggle"])
    assert local_arguments(args) == {"dataset_source": "kaggle", **expected.to_pipeline()}


def test_given_options_override_the_demo_values():
    argv = ["run", "--demo", "--epochs", "5", "--lr", "0.01", "--skip-missing-weights", "--sources", "imagenet"]
    arguments = local_arguments(pipeline.build_parser().parse_args(argv))
    assert (arguments["epochs"], arguments["learning_rate"], arguments["batch_size"]) == (5, 0.01, 16)
    assert (arguments["skip_missing_weights"], arguments["sources"]) == (True, ["imagenet"])
