"""`colab-guard policy publish | versions | show`: policy versions in the shared store.

Servers with ``ColabGuardApp.policy_source = "store"`` put the newest version in force
within ``policy_poll_interval`` seconds, and their running kernels before their next
cell. A rollback publishes an old version again (``--from-version N``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from .policy.document import read_document
from .store import StrikeStore
from .store.policies import PolicyVersions

STORE_URL_ENV = "COLAB_GUARD_STORE_URL"


class StoreUnusable(Exception):
    """The store cannot be reached or has no policy table."""


def _versions(args: argparse.Namespace, create: bool = False) -> PolicyVersions:
    url = args.store or os.environ.get(STORE_URL_ENV, "")
    if not url:
        raise StoreUnusable(f"no store: give --store URL or set ${STORE_URL_ENV}")
    store = StrikeStore(url)
    if create:  # the owner's URL: creates the tables of a new database
        try:
            store.migrate()
        except SQLAlchemyError as err:
            raise StoreUnusable(f"cannot set up the store: {_short(err)}") from None
    return PolicyVersions(store.engine)


def _short(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


def cmd_publish(args: argparse.Namespace) -> int:
    versions = _versions(args, create=True)
    if args.from_version is not None:
        old = versions.get(args.from_version)
        if old is None:
            raise StoreUnusable(f"there is no version {args.from_version}")
        document = old.document
        versions.load(old)  # still valid for this code
        comment = args.comment or f"rollback to version {old.version}"
    else:
        document, _policy = read_document(args.path)  # PolicyError: nothing is stored
        comment = args.comment
    row = versions.publish(document, by=args.by or getpass.getuser(), comment=comment)
    print(
        f"published version {row.version} (policy {row.policy_version}, sha256 "
        f"{row.sha256[:12]}...) by {row.published_by}"
    )
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    rows = _versions(args).history(args.limit)
    if args.json:
        print(json.dumps({"versions": [r.summary() for r in rows]}, indent=2))
        return 0
    if not rows:
        print("no policy published")
        return 0
    print(f"{'VERSION':>7}  {'POLICY':16}  {'PUBLISHED (UTC)':19}  BY / COMMENT")
    for i, r in enumerate(rows):
        when = r.summary()["time"][:19].replace("T", " ")
        note = f"  {r.comment}" if r.comment else ""
        newest = "  [newest: in force in store mode]" if i == 0 else ""
        print(f"{r.version:>7}  {r.policy_version:16}  {when}  {r.published_by}{note}{newest}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    row = _versions(args).get(args.version)
    if row is None:
        what = f"version {args.version}" if args.version is not None else "any version"
        raise StoreUnusable(f"the store holds no {what}")
    info = row.summary()
    print(
        f"# version {row.version}, policy {row.policy_version}, published {info['time']} "
        f"by {row.published_by}" + (f": {row.comment}" if row.comment else ""),
        file=sys.stderr,
    )
    sys.stdout.write(row.document if row.document.endswith("\n") else row.document + "\n")
    return 0


def run(func: Any, args: argparse.Namespace) -> int:
    """Store problems as one clear line and exit code 2 (policy problems: cli.main)."""
    try:
        return int(func(args))
    except StoreUnusable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SQLAlchemyError as err:
        print(f"error: the store cannot be read or written: {_short(err)}", file=sys.stderr)
        return 2


def add_commands(psub: Any) -> None:
    """``publish``, ``versions`` and ``show`` under ``colab-guard policy``."""
    store_help = f"SQLAlchemy URL of the shared store (default: ${STORE_URL_ENV})"
    p = psub.add_parser("publish", help="validate a policy and publish it to the shared store")
    p.add_argument("path", nargs="?", help="policy YAML file or policy folder")
    p.add_argument("--store", help=store_help)
    p.add_argument("--by", help="who publishes (default: the OS user)")
    p.add_argument("--comment", help="why (kept with the version)")
    p.add_argument(
        "--from-version",
        type=int,
        metavar="N",
        help="publish stored version N again (a rollback) instead of a file",
    )
    p.set_defaults(func=lambda a: run(cmd_publish, _need_path(p, a)))
    v = psub.add_parser("versions", help="list the policy versions in the shared store")
    v.add_argument("--store", help=store_help)
    v.add_argument("--limit", type=int, default=50, help="newest N versions (default 50)")
    v.add_argument("--json", action="store_true", help="one JSON object")
    v.set_defaults(func=lambda a: run(cmd_versions, a))
    s = psub.add_parser("show", help="print a policy version from the shared store")
    s.add_argument("--store", help=store_help)
    s.add_argument("--version", type=int, help="the version (default: the newest)")
    s.set_defaults(func=lambda a: run(cmd_show, a))


def _need_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if (args.path is None) == (args.from_version is None):
        parser.error("give a policy PATH or --from-version N (one of them)")
    return args
