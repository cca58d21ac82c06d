"""``cxrtl weights ...``: list, check, fetch, put and verify the ten sources' files, and write stand-ins."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cxrtl.cli.options import add_store_option, open_store_of
from cxrtl.errors import CxrtlError
from cxrtl.weights.registry import SOURCE_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "weights",
        help="the ten pretrained-weight sources: list, check, fetch, put, verify, stand-in",
        description=f"Weight sources: {', '.join(SOURCE_NAMES)}.",
    )
    store_option = add_store_option(group)
    commands = group.add_subparsers(dest="weights_command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", parents=[store_option], help="each source: where from, stored, verified")
    p.set_defaults(func=_list)

    p = commands.add_parser("check", help="load a file with a source's adapter and count the backbone tensors")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=_check)

    p = commands.add_parser(
        "fetch", parents=[store_option], help="download the published files into the store (all by default)"
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="sources to fetch (default: all; a manual-download source named here that is not fetched is an error)",
    )
    p.add_argument("--mirror", help="base URL of a mirror with the same file names (default: CXRTL_WEIGHTS_MIRROR)")
    p.set_defaults(func=_fetch)

    p = commands.add_parser("put", parents=[store_option], help="check a file and store it as SOURCE's weights")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--stand-in", action="store_true", help="the file is a stand-in, not the published weights")
    p.add_argument(
        "--allow-sha-mismatch",
        action="store_true",
        help="store the file even though its sha256 differs from the published one (logged)",
    )
    p.add_argument(
        "--allow-same-file",
        action="store_true",
        help="store the file even though the same file (sha256) is stored for another source (logged)",
    )
    p.set_defaults(func=_put)

    p = commands.add_parser("verify", parents=[store_option], help="re-hash every stored weight file")
    p.set_defaults(func=_verify)

    p = commands.add_parser("stand-in", help="write a stand-in checkpoint in SOURCE's native format")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=_stand_in)


def _list(args: argparse.Namespace) -> None:
    from cxrtl.weights.stored import list_weights

    rows = []
    for row in list_weights(open_store_of(args)):
        verified = "-" if row.verified is None else f"{'yes' if row.verified else 'FAILED'} {row.verified_at[:10]}"
        rows.append(
            (
                row.source,
                row.origin,
                "yes" if row.stored else "no",
                row.sha256[:12] if row.sha256 else "-",
                row.sha256_check or "-",
                verified,
                "yes" if row.stand_in else "no" if row.stored else "-",
            )
        )
    _print_table(("SOURCE", "FROM", "STORED", "SHA256", "SHA256 CHECK", "VERIFIED", "STAND-IN"), rows)


def _check(args: argparse.Namespace) -> None:
    from cxrtl.store.base import sha256_file
    from cxrtl.weights.adapters import check_checkpoint
    from cxrtl.weights.registry import get_source

    check = check_checkpoint(args.source, args.file)
    print(check.summary())
    digest = sha256_file(args.file)
    source = get_source(args.source)
    matches = source.published_matches(args.file, digest)
    published = source.published_checksum
    verdict = {None: "no published checksum", True: f"has the published {published}"}.get(
        matches, f"does NOT have the published {published}"
    )
    print(f"sha256 {digest} ({verdict})")


def _fetch(args: argparse.Namespace) -> None:
    from cxrtl.weights.download import fetch_weights

    results = fetch_weights(open_store_of(args), args.sources or None, mirror=args.mirror)
    for result in results:
        print(f"{result.source}: {result.status}: {result.detail}")
    failed = [r.source for r in results if r.status == "failed"]
    if failed:
        raise CxrtlError(f"fetch failed for {', '.join(failed)} (reasons above)")
    # Asked for by name, a source that has no download is not there afterwards: say so in the exit status.
    manual = [r.source for r in results if r.status == "manual" and args.sources]
    if manual:
        raise CxrtlError(f"not fetched: {', '.join(manual)} must be downloaded by hand and put (how: above)")


def _put(args: argparse.Namespace) -> None:
    from cxrtl.weights.stored import put_weights

    stored = put_weights(
        open_store_of(args),
        args.source,
        args.file,
        stand_in=args.stand_in,
        allow_sha_mismatch=args.allow_sha_mismatch,
        allow_same_file=args.allow_same_file,
    )
    kind = " (stand-in)" if stored.stand_in else ""
    print(f"{stored.source}{kind}: {stored.tensors} backbone tensors, sha256 {stored.sha256}, stored as {stored.key}")


def _verify(args: argparse.Namespace) -> None:
    from cxrtl.weights.stored import verify_weights

    results = verify_weights(open_store_of(args))
    if not results:
        print("no weight files in the store")
        return
    _print_table(
        ("SOURCE", "SHA256", "OK", "DETAIL"),
        [(r.source, r.sha256[:12], "yes" if r.ok else "NO", r.detail) for r in results],
    )
    failed = [r for r in results if not r.ok]
    if failed:
        raise CxrtlError(f"{len(failed)} of {len(results)} stored weight files failed verification")


def _stand_in(args: argparse.Namespace) -> None:
    from cxrtl.weights.standin import write_stand_in

    print(write_stand_in(args.source, args.out, seed=args.seed))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
