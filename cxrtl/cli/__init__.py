"""The ``cxrtl`` console script: one sub-command per step, plus the weights and store groups."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cxrtl import __version__, signals
from cxrtl.errors import CxrtlError

# Each module adds its sub-commands with register(subparsers) and sets ``func`` on them.
_COMMAND_MODULES = ("steps", "weights", "store", "simulate")


class _Parser(argparse.ArgumentParser):
    """Reports a bad option in the one line every other error gets (not argparse's usage block)."""

    def error(self, message: str):
        self.exit(2, f"cxrtl: error: {self.prog.removeprefix('cxrtl ')}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="cxrtl",
        description="COVID-19 vs Normal chest X-ray transfer learning from ten pretrained ResNet50 sources.",
    )
    parser.add_argument("--version", action="version", version=f"cxrtl {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"cxrtl.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a bad option: the status, not an exception, to the caller
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signals.install()
    try:
        return args.func(args) or 0
    except CxrtlError as exc:
        print(f"cxrtl: error: {exc}", file=sys.stderr)
        return 2
    except signals.Terminated:
        print("cxrtl: terminated (SIGTERM)", file=sys.stderr)
        return signals.EXIT_CODE
    except KeyboardInterrupt:
        print("cxrtl: interrupted", file=sys.stderr)
        return 130
