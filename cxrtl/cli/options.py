"""Options several command groups share."""

from __future__ import annotations

import argparse

STORE_HELP = "s3://BUCKET[/PREFIX], file:///PATH or a path (default: $CXRTL_STORE, else ~/.cache/cxrtl/store)"


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
