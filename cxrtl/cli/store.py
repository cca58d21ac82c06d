"""``cxrtl store``: look inside the artifact store (a folder or an S3 bucket) by hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrtl.cli.options import add_store_option, open_store_of
from cxrtl.prune import PrunePolicy, prune
from cxrtl.store import keys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="list, fetch, upload or remove objects in the artifact store",
        description=f"Objects are addressed by key ({keys.weights_key('SOURCE', 'SHA256')}, "
        f"{keys.training_prefix('SOURCE', 'TRAINING')}..., ...; the layout is in cxrtl/store/keys.py). "
        "s3:// stores read MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE and MINIO_TIMEOUT_S.",
    )
    common = add_store_option(parser)
    actions = parser.add_subparsers(dest="store_action", required=True, metavar="ACTION")

    p = actions.add_parser("ls", parents=[common], help="list keys, optionally only those starting with PREFIX")
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    p.set_defaults(func=_ls)

    p = actions.add_parser("get", parents=[common], help="download KEY to FILE (or into FILE if it is a folder)")
    p.add_argument("key", metavar="KEY")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=_get)

    # KEY before FILE, as in get, and as SOURCE before FILE in `cxrtl weights put`.
    p = actions.add_parser("put", parents=[common], help="upload FILE as KEY (the older order FILE KEY still works)")
    p.add_argument("key", metavar="KEY")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=_put)

    p = actions.add_parser("rm", parents=[common], help="remove KEY")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=_rm)

    p = actions.add_parser("mb", parents=[common], help="create the store's bucket (or folder) if it is missing")
    p.set_defaults(func=_mb)

    defaults = PrunePolicy()
    p = actions.add_parser(
        "prune",
        parents=[common],
        help="list what the retention policy deletes (the champion, its lineage, weights and datasets never); "
        "--apply deletes it",
    )
    p.add_argument("--apply", action="store_true", help="delete (default: a dry run that only lists)")
    p.add_argument(
        "--keep-runs",
        type=int,
        default=defaults.keep_runs,
        help=f"finished runs whose reports and models stay (default {defaults.keep_runs})",
    )
    p.add_argument(
        "--failed-days",
        type=float,
        default=defaults.failed_days,
        help=f"days a run with a failed training is kept whole (default {defaults.failed_days:g})",
    )
    p.add_argument(
        "--stale-days",
        type=float,
        default=defaults.stale_days,
        help=f"days an unfinished training's checkpoints wait for a run to resume it (default {defaults.stale_days:g})",
    )
    p.set_defaults(func=_prune)


def _ls(args: argparse.Namespace) -> None:
    for key in open_store_of(args).list(args.prefix):
        print(key)


def _get(args: argparse.Namespace) -> None:
    target = args.file / args.key.rsplit("/", 1)[-1] if args.file.is_dir() else args.file
    digest = open_store_of(args).get_file(args.key, target)
    print(f"{target}  sha256 {digest}")


def _put(args: argparse.Namespace) -> None:
    if Path(args.key).is_file() and not args.file.exists():
        print("cxrtl: warning: `store put FILE KEY` is deprecated: use `store put KEY FILE`", file=sys.stderr)
        args.key, args.file = str(args.file), Path(args.key)
    store = open_store_of(args)
    digest = store.put_file(args.key, args.file)
    print(f"{store.url}/{args.key}  sha256 {digest}")


def _rm(args: argparse.Namespace) -> None:
    from cxrtl.store import StoreError

    store = open_store_of(args)
    if not store.exists(args.key):
        raise StoreError(f"{store.url}: no object {args.key}")
    store.delete(args.key)


def _prune(args: argparse.Namespace) -> None:
    policy = PrunePolicy(keep_runs=args.keep_runs, failed_days=args.failed_days, stale_days=args.stale_days)
    result = prune(open_store_of(args), policy, apply=args.apply)
    for line in result.lines():
        print(f"{'deleted' if args.apply else 'would delete'} {line}")
    verb = "deleted" if args.apply else "would be deleted (dry run; --apply deletes them)"
    print(f"{len(result.delete)} keys {verb}; {result.kept} kept")


def _mb(args: argparse.Namespace) -> None:
    store = open_store_of(args)
    store.create()
    print(store.url)
