"""``cxrtl store``: look inside the artifact store (a folder or an S3 bucket) by hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrtl.cli.options import add_store_option, open_store_of
from cxrtl.store import keys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="list, fetch, upload or remove objects in the artifact store",
        description=f"Objects are addressed by key ({keys.weights_key('SOURCE', 'SHA256')}, "
        f"{keys.run_prefix('RUN_ID', 'SOURCE')}..., ...; the layout is in cxrtl/store/keys.py). "
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


def _mb(args: argparse.Namespace) -> None:
    store = open_store_of(args)
    store.create()
    print(store.url)
