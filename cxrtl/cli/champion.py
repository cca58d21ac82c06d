"""``cxrtl champion``: check the champion in the store, and reset a damaged one."""

from __future__ import annotations

import argparse

from cxrtl.cli.options import add_store_option, open_store_of


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "champion",
        help="verify the champion in the store, or reset a damaged one",
        description="The champion is the version champion/current.json names (the layout is in "
        "cxrtl/store/keys.py). A run checks it before training and stops, naming these commands, when it is damaged.",
    )
    common = add_store_option(parser)
    actions = parser.add_subparsers(dest="champion_action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "verify",
        parents=[common],
        help="read every file of the champion and check it against its pointer's sha256 (reads only)",
    )
    p.set_defaults(func=_verify)

    p = actions.add_parser(
        "reset",
        parents=[common],
        help="go back to the champion before the current one if it is intact, else to no champion",
    )
    p.add_argument("--none", action="store_true", help="remove the champion: the next run's best becomes the first")
    p.set_defaults(func=_reset)


def _verify(args: argparse.Namespace) -> int:
    from cxrtl import champion

    store = open_store_of(args)
    current, problems = champion.inspect(store)
    if current is None and not problems:
        print(f"no champion in {store.url}")
        return 0
    for problem in problems:
        print(f"damaged: {problem}")
    if problems:
        print(f"`{champion.reset_command(store)}` goes back to the champion before it (or to none)")
        return 1
    print(f"{current.describe()}: {len(current.pointer.files)} files verified in {store.url}")
    return 0


def _reset(args: argparse.Namespace) -> None:
    from cxrtl import champion

    print(champion.reset(open_store_of(args), to_none=args.none))
