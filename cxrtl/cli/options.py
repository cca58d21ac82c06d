"""Options several command groups share."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

STORE_HELP = "s3://BUCKET[/PREFIX], file:///PATH or a path (default: $CXRTL_STORE, else ~/.cache/cxrtl/store)"


def add_device_option(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``; a ``default`` of None leaves it to the caller (train: the recipe's, which is auto)."""
    p.add_argument("--device", default=default, help="auto (default), cpu, cuda, cuda:1 ...")


def add_store_option(group: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--store`` on a command group, and a parent parser that accepts it after the sub-command too.

    The parent's SUPPRESS default keeps a value given before the sub-command from being overwritten.
    """
    group.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=STORE_HELP)
    return parent


def open_store_of(args: argparse.Namespace):
    from cxrtl.store import open_store

    return open_store(args.store)


def comma_list(parse):
    """An option type taking one item or a comma-separated list of them (as the overlays' gpu.env holds)."""

    def parse_all(text: str) -> list:
        return [parse(item.strip()) for item in text.split(",") if item.strip()]

    return parse_all


def checked(parse: Callable[[str], Any], problem: Callable[[Any], str | None]) -> Callable[[str], Any]:
    """An option type: ``parse``'s value, refused by argparse (before torch or the data load) if ``problem``
    finds one."""

    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {parse.__name__}: {text!r}") from None
        found = problem(value)
        if found:
            raise argparse.ArgumentTypeError(found)
        return value

    check.__name__ = parse.__name__  # argparse names the type in its own messages
    return check


def add_setting_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: Iterable[str] | None = None, *, check: bool
) -> None:
    """An option per run setting (cxrtl.settings.RunSettings) in ``names`` (default: all), with its help; each
    None when not given. ``check``: argparse checks each value as it reads it (else the settings made of them
    do)."""
    from cxrtl.settings import RunSettings, option, setting_problem, value_type

    chosen = None if names is None else set(names)
    for f in dataclasses.fields(RunSettings):
        if chosen is not None and f.name not in chosen:
            continue
        about, kind = f.metadata, value_type(f)
        if kind is bool:
            parser.add_argument(
                option(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=about["help"]
            )
            continue
        parse = comma_list(str) if kind is list else kind
        if check:
            parse = checked(parse, lambda value, name=f.name: setting_problem(name, value))
        bare = {} if about["bare"] is None else {"nargs": "?", "const": about["bare"]}
        parser.add_argument(
            option(f.name), dest=f.name, type=parse, choices=about["choices"] or None, help=about["help"], **bare
        )


def given_settings(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The run settings in ``names`` (default: all) given as options (:func:`add_setting_options`), by name."""
    from cxrtl.settings import SETTINGS

    return {name: getattr(args, name) for name in names or SETTINGS if getattr(args, name, None) is not None}
