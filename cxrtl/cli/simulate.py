"""``cxrtl coverage`` and ``cxrtl promotion-sim``: the simulations behind the intervals and the promotion rule."""

from __future__ import annotations

import argparse

MAX_REPLICATES = 100_000  # beyond this the simulations take hours on one core and say nothing more


def _replicates(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_REPLICATES:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..{MAX_REPLICATES:,}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "coverage",
        help="simulate how often each reported 95 %% interval covers the true value (prints a Markdown table)",
    )
    p.add_argument("--replicates", type=_replicates, default=2000, help="per row (default 2000)")
    p.add_argument(
        "--bootstrap-replicates", type=_replicates, default=200, help="per bootstrapped row, slower (default 200)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_coverage)

    p = subparsers.add_parser(
        "promotion-sim",
        help="simulate false promotions (equal models, best of 1/10/30) and power at 1,453 test images",
    )
    p.add_argument("--replicates", type=_replicates, default=200, help="per row (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_promotion)


def _coverage(args: argparse.Namespace) -> None:
    from cxrtl import coverage

    print(coverage.markdown(coverage.coverage_table(args.replicates, args.bootstrap_replicates, args.seed)))


def _promotion(args: argparse.Namespace) -> None:
    from cxrtl import promotion_sim

    print(promotion_sim.markdown(list(promotion_sim.promotion_table(args.replicates, seed=args.seed))))
