"""`colab-guard monitor`: its options, and starting and stopping the daemon."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

STORE_URL_ENV = "COLAB_GUARD_STORE_URL"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``monitor`` command to the ``colab-guard`` sub-command parsers."""
    p = subparsers.add_parser(
        "monitor",
        help="watch the processes of every user of this machine (as root)",
        description="Run as root: judge every new process of a user (uid range, or "
        "processes of JupyterHub users) by the policy, kill the tree of what the policy "
        "blocks and record strikes for the user in the shared strike store.",
    )
    p.add_argument("--policy", help="policy file, or a folder holding one (default: shipped)")
    p.add_argument(
        "--store",
        help=f"strike store URL, sqlite:///PATH or postgresql://... (default: ${STORE_URL_ENV}; "
        "prefer the variable: a password on the command line is visible in the process list)",
    )
    p.add_argument("--spool", help="file for events the store cannot take yet (fsynced)")
    p.add_argument("--min-uid", type=_uid, default=1000, help="lowest uid watched (default 1000)")
    p.add_argument("--max-uid", type=_uid, default=60000, help="highest uid watched (60000)")
    p.add_argument(
        "--hub-only",
        action="store_true",
        help="only processes whose environment (or a same-uid ancestor's) has JUPYTERHUB_USER",
    )
    p.add_argument(
        "--user-from",
        choices=("env", "uid"),
        default="env",
        help="whose a process is: env = JUPYTERHUB_USER, else the uid's login name "
        "(default); uid = the login name only (every hub user has a uid of their own)",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between /proc passes")
    p.add_argument(
        "--no-connector", action="store_true", help="poll only, no process connector exec events"
    )
    p.add_argument("--policy-poll", type=float, default=2.0, help="seconds between policy checks")
    p.add_argument("--default-tier", help="policy tier of every user (default: the first tier)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-addr", default="127.0.0.1", help="address of /metrics (127.0.0.1)")
    p.add_argument(
        "--stats-interval", type=float, default=300.0, help="seconds between counter log lines"
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run)
    return p


def _uid(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("root (uid 0) is never watched")
    return value


def store_url(raw: str) -> str:
    """``postgres://``/``postgresql://`` with the installed driver (psycopg 3 unless
    psycopg2 is there, SQLAlchemy's default)."""
    from sqlalchemy.engine import make_url

    url = make_url(raw.replace("postgres://", "postgresql://", 1))
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from sqlalchemy.engine import make_url

    from ..store import StoreError, StrikeStore
    from .daemon import Monitor, MonitorSettings
    from .owners import OwnerResolver
    from .policy import PolicySource

    raw = args.store or os.environ.get(STORE_URL_ENV)
    if not raw:
        log.error("colab-guard monitor: no store: give --store or $%s", STORE_URL_ENV)
        return 2
    url = store_url(raw)
    if args.store and make_url(url).password:
        log.warning("colab-guard monitor: the store password is visible in the process list")
    if args.max_uid < args.min_uid:
        log.error("colab-guard monitor: --max-uid is below --min-uid")
        return 2
    if os.geteuid() != 0:
        log.warning("colab-guard monitor: not root: other users' processes cannot be killed")
    source = PolicySource(args.policy)
    policy = source.load()  # a PolicyError: the CLI prints every problem, exit 2
    log.info("colab-guard monitor: policy %s (version %s)", policy.path, policy.version)
    store = StrikeStore(url, spool_path=args.spool)
    try:
        store.open(tolerate_down=True)
    except StoreError as err:
        log.critical("colab-guard monitor: %s", err)
        return 2
    owners = OwnerResolver(
        min_uid=args.min_uid,
        max_uid=args.max_uid,
        hub_only=args.hub_only,
        user_from=args.user_from,
    )
    settings = MonitorSettings(
        interval=args.interval,
        connector=not args.no_connector,
        policy_poll=args.policy_poll,
        stats_interval=args.stats_interval,
        default_tier=args.default_tier,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Monitor(source, store, owners, settings).run(stop)
    return 0
