"""`colab-guard lab`: a guarded JupyterLab on 127.0.0.1 (default policy, SQLite store).

The guard is the server extension (``ColabGuardApp``); this command only starts JupyterLab
with the extension enabled on the command line (so a missing or disabled
``jupyter_server_config.d`` file cannot leave the server unguarded), the policy given with
``--policy`` and fail-fast loading, and prints where to open it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE = "prohibited.ipynb"
DEFAULT_PORT = 8888


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``lab`` command to the ``colab-guard`` sub-command parsers."""
    p = subparsers.add_parser(
        "lab",
        help="start a guarded JupyterLab on 127.0.0.1",
        description="Start JupyterLab on 127.0.0.1 with the guard's server extension "
        "(policy check of every cell, strikes in the local SQLite store, FAQ and "
        "strike pages under /colab-guard/). Options after `--` go to Jupyter "
        "(e.g. `-- --ServerApp.log_level=DEBUG`).",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument("--policy", help="policy YAML (default: the shipped Colab policy)")
    p.add_argument(
        "--no-browser", action="store_true", help="do not open a browser, only print the URL"
    )
    p.add_argument(
        "--notebook-dir",
        help="directory to serve (default: ./samples when run from the repository, "
        "else the current directory)",
    )
    p.add_argument(
        "--reset-strikes",
        action="store_true",
        help="clear your strikes in the local store before starting (after trying the "
        "samples a few times, the default policy restricts and then suspends you)",
    )
    p.add_argument("jupyter_args", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def default_notebook_dir(cwd: Path | None = None) -> Path:
    """``samples/`` when run from the repository (it holds the sample notebooks)."""
    cwd = cwd or Path.cwd()
    samples = cwd / "samples"
    return samples if (samples / SAMPLE).is_file() else cwd


def server_argv(
    args: argparse.Namespace, token: str, notebook_dir: Path, is_root: bool
) -> list[str]:
    """The ServerApp command line for ``args`` (pure: tested without starting anything)."""
    argv = [
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={args.port}",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--IdentityProvider.token={token}",
        # enabled here, not only by the installed config.d file
        "--ServerApp.jpserver_extensions=jupyter_colab_guard=True",
        # a guard that cannot load must not leave an unguarded server behind
        "--ServerApp.reraise_server_extension_failures=True",
        # terminals bypass kernels, so the guard (see docs/server.md)
        "--ServerApp.terminals_enabled=False",
        # one person's own server: their own kernelspecs (ipython kernel install --user)
        # and IPython profile
        "--ColabGuardApp.trust_user_kernelspecs=True",
        "--ColabGuardApp.trust_user_profile=True",
    ]
    if args.policy:
        argv.append(f"--ColabGuardApp.policy_path={Path(args.policy).resolve()}")
    if args.no_browser:
        argv.append("--ServerApp.open_browser=False")
    if is_root:
        # containers and CI run as root; Jupyter refuses that unless told otherwise
        argv.append("--ServerApp.allow_root=True")
    extra = list(args.jupyter_args or [])
    # an option given after `--` replaces ours (traitlets refuses a scalar given twice)
    given = {_option_name(a) for a in extra if a.startswith("--")}
    return [a for a in argv if _option_name(a) not in given] + extra


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def banner(serverapp: Any, notebook_dir: Path) -> str:
    """Where to open the server (the token actually in force, the port actually bound)."""
    base = f"http://{serverapp.ip}:{serverapp.port}{serverapp.base_url}"
    token = serverapp.identity_provider.token
    q = f"?token={token}" if token else ""
    guard = serverapp.web_app.settings.get("colab_guard")
    lines = [
        "",
        "  Guarded JupyterLab is running.",
        f"  Open:        {base}lab{q}",
    ]
    if (notebook_dir / SAMPLE).is_file():
        lines.append(f"  Sample:      {base}lab/tree/{SAMPLE}{q}")
    lines += [
        f"  Strikes:     {base}colab-guard/{q}",
        f"  FAQ:         {base}colab-guard/faq{q}",
        f"  Serving:     {notebook_dir}",
    ]
    if guard is not None:
        lines += [
            f"  Policy:      {guard.policy_path or '(shipped default)'}",
            "  Store:       " + guard.store.engine.url.render_as_string(hide_password=True),
        ]
    lines += ["  Stop with Control-C.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "error: JupyterLab is not installed; install it with: pip install jupyterlab",
            file=sys.stderr,
        )
        return 2
    if args.policy and not Path(args.policy).is_file():
        print(f"error: no such policy file: {args.policy}", file=sys.stderr)
        return 2
    if args.policy:
        from .policy import PolicyError, load_policy

        try:
            load_policy(args.policy)
        except PolicyError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return 2
    notebook_dir = Path(args.notebook_dir).resolve() if args.notebook_dir else None
    notebook_dir = notebook_dir or default_notebook_dir().resolve()
    if not notebook_dir.is_dir():
        print(f"error: not a directory: {notebook_dir}", file=sys.stderr)
        return 2
    token = secrets.token_hex(24)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    argv = server_argv(args, token, notebook_dir, is_root)
    return start(argv, notebook_dir, reset=args.reset_strikes)


def start(argv: Sequence[str], notebook_dir: Path, reset: bool = False) -> int:
    from jupyterlab.labapp import LabApp

    serverapp = LabApp.initialize_server(argv=list(argv))
    guard = serverapp.web_app.settings.get("colab_guard")
    if guard is None:
        print("error: the guard's server extension did not load", file=sys.stderr)
        return 1
    if reset:
        # the store and the user the server itself uses (owner: a local server's one user)
        guard.store.reset(guard.owner, by="colab-guard lab --reset-strikes")
        print(f"colab-guard: the strikes of {guard.owner} were reset", flush=True)
    text = banner(serverapp, notebook_dir)
    # printed once the loop runs, after Jupyter's own start-up lines
    serverapp.io_loop.add_callback(lambda: print(text, flush=True))
    serverapp.start()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jupyter_colab_guard.lab`` (the same as ``colab-guard lab``)."""
    parser = argparse.ArgumentParser(prog="colab-guard")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
