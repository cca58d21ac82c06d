"""The `cxrtl` command line's conventions: help without a command, one-line mistakes with a suggestion, every
option's default in its help, the argument order of the put commands, manual weight sources, quiet libraries."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cxrtl.cli import HelpFormatter, build_parser, main
from cxrtl.store import open_store
from cxrtl.weights.registry import get_source
from tests.refusal import one_error_line


def test_without_a_command_it_prints_its_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cxrtl")
    for command in ("train", "weights", "store"):
        assert command in out


def test_a_mistyped_command_is_one_line_with_a_suggestion(capsys):
    status = main(["trian"])
    line = one_error_line(status, capsys.readouterr().err, naming=["'trian'", "did you mean 'train'?"])
    assert not line.startswith("cxrtl: error: cxrtl"), line


def test_a_mistyped_sub_command_and_choice_get_a_suggestion(capsys):
    one_error_line(main(["weights", "fetc"]), capsys.readouterr().err, naming=["weights:", "did you mean 'fetch'?"])
    argv = ["preprocess", "--raw", "r", "--out", "o", "--recipe", "papr"]
    one_error_line(main(argv), capsys.readouterr().err, naming=["--recipe", "did you mean 'paper'?"])


def test_nothing_close_lists_the_choices(capsys):
    one_error_line(main(["xyzzy"]), capsys.readouterr().err, naming=["choose from", "train"])


def test_a_mistyped_weight_source_gets_a_suggestion(capsys, tmp_path):
    argv = ["weights", "check", "imagnet", str(tmp_path / "x.pth")]
    one_error_line(main(argv), capsys.readouterr().err, naming=["'imagnet'", "did you mean 'imagenet'?"])


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield " ".join((*path, action.option_strings[0])), action


def options_without_their_default(parser: argparse.ArgumentParser, exempt: tuple[str, ...] = ()) -> list[str]:
    """Options of ``parser`` and its sub-commands whose help is missing or does not show their default (a
    flag's default is off, a required option has none; ``exempt``: options that are alternatives to others)."""
    formatter = HelpFormatter("cxrtl")
    missing = []
    for name, action in _options(parser):
        shown = formatter._get_help_string(action)
        flag = isinstance(action, argparse._StoreTrueAction)
        if not shown or not (flag or action.required or "default" in shown or action.option_strings[0] in exempt):
            missing.append(name)
    return missing


def test_every_option_has_help_that_shows_its_default():
    assert not options_without_their_default(build_parser())


def test_store_put_takes_key_then_file_and_still_the_older_order(tmp_path, capsys):
    url = str(tmp_path / "store")
    file = tmp_path / "a.txt"
    file.write_text("a")
    assert main(["store", "--store", url, "put", "new/a.txt", str(file)]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["store", "--store", url, "put", str(file), "old/a.txt"]) == 0
    assert "`store put FILE KEY` is deprecated: use `store put KEY FILE`" in capsys.readouterr().err
    assert sorted(open_store(url).list("")) == ["new/a.txt", "old/a.txt"]


def test_fetching_a_manual_source_by_name_fails_saying_where_and_how(tmp_path, capsys):
    url = str(tmp_path / "store")
    source = get_source("inat2021-supervised")
    status = main(["weights", "--store", url, "fetch", source.name])
    captured = capsys.readouterr()
    one_error_line(status, captured.err, naming=["not fetched", source.name])
    assert "https://" in captured.out
    assert f"cxrtl weights put {source.name} " in captured.out
    assert not list(open_store(url).list("weights/"))


@pytest.mark.parametrize("quiet", [False, True])
def test_no_font_cache_line_from_matplotlib(tmp_path, quiet):
    """A fresh matplotlib (no font cache yet) imported under the CLI's logging logs nothing."""
    code = (
        "import logging; from cxrtl.cli import configure_logging; "
        f"configure_logging(logging.{'WARNING' if quiet else 'INFO'}); "
        "import matplotlib.font_manager; logging.getLogger('cxrtl').info('ours')"
    )
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "matplotlib" not in done.stderr
    assert ("ours" in done.stderr) is not quiet  # the CLI's own lines still show
