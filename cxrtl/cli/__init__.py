"""The ``cxrtl`` console script: one sub-command per step, plus the weights, store and champion groups."""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence

from cxrtl import __version__, signals
from cxrtl.errors import CxrtlError
from cxrtl.files import disk_problem

# Each module adds its sub-commands with register(subparsers) and sets ``func`` on them.
_COMMAND_MODULES = ("steps", "predict", "serve", "weights", "store", "champion", "simulate")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = any(action.default is value for value in (None, False, argparse.SUPPRESS))  # `in` would take 0 too
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'X'?" for the choice closest to a mistyped ``value``, or "" when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class Parser(argparse.ArgumentParser):
    """Reports a bad option in the one line every other error gets (not argparse's usage block), with a
    suggestion for a mistyped choice, and shows each option's default in its help; ``pipeline.py`` uses it too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # sub-command parsers are made with this class too
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        invalid = _INVALID_CHOICE.search(message)
        if invalid:
            choices = [c.strip().strip("'") for c in invalid.group(2).split(",")]
            hint = did_you_mean(invalid.group(1), choices) or f" (choose from {', '.join(choices)})"
            message = message[: invalid.start()] + f"invalid choice {invalid.group(1)!r}{hint}"
        program, _, command = self.prog.partition(" ")
        self.exit(2, f"{program}: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


# Libraries whose INFO lines say nothing to a user: matplotlib's "generated new fontManager", logged the
# first time figures are made on a machine (the first line a fresh `make demo` printed).
_QUIET_LIBRARIES = ("matplotlib",)


def configure_logging(level: int) -> None:
    """Log lines at ``level`` and above to stderr (``cxrtl`` and ``pipeline.py`` alike), without other
    libraries' INFO lines."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = Parser(
        prog="cxrtl",
        description="COVID-19 vs Normal chest X-ray transfer learning from ten pretrained ResNet50 sources.",
        epilog="Without a command: this help (exit status 0). A mistake: one line, exit status 2.",
    )
    parser.add_argument("--version", action="version", version=f"cxrtl {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"cxrtl.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: logging.WARNING if args.quiet else logging.INFO)


def run_command(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, log_level: Callable[[argparse.Namespace], int]
) -> int:
    """Parse ``argv`` and run its command, as ``cxrtl`` and ``pipeline.py`` both do: help without a command, a
    user's mistake as one line naming the program (exit status 2), a signal as its exit status."""
    program = parser.prog
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a bad option: the status, not an exception, to the caller
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    configure_logging(log_level(args))
    signals.install()  # SIGTERM takes Ctrl-C's way out
    try:
        return args.func(args) or 0
    except CxrtlError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A full or read-only disk anywhere (TMPDIR, an output folder) is the environment, not a bug.
        problem = disk_problem(exc)
        if problem is None:
            raise
        print(f"{program}: error: {exc.filename or 'a file'}: {problem}", file=sys.stderr)
        return 2
    except signals.Terminated as exc:
        print(f"{program}: terminated ({exc.signal_name})", file=sys.stderr)
        return signals.EXIT_CODE
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
