"""Load test: N simulated users executing cells over the kernel websocket on one server.

Starts a jupyter_server subprocess on loopback with and without the guard (same kernels,
same cells; ``--rounds`` times each, alternating which goes first, latencies pooled).
Each simulated user has a kernel and an identity of their own
(benchmarks/load_identity.py), all users at once. Every user runs benign cells and,
every ``--every``-th cell, a prohibited one from the shipped default policy. Prints
executions per second, latency per execution (p50/p99) with and without the guard and
the difference, and strikes recorded (admin API) against expected; exits 1 when they
differ.

    python benchmarks/load_test.py [--users 10] [--cells 60] [--every 5] [--rounds 2]
        [--json out.json]

Every cell is made unique (a comment with a counter), so the analyzer never answers from
a cache. Kernel start-up is not timed. The escalation ladder is one warning step, so no
user is restricted during the run and every prohibited cell is exactly one strike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

HERE = Path(__file__).resolve().parent
V1 = "v1.kernel.websocket.jupyter.org"

BENIGN = [
    "x = sum(i * i for i in range(20000))\nprint(x)",
    "import json\nd = {'a': [1, 2, 3], 'b': {'c': 'd'}}\nprint(json.dumps(d, sort_keys=True))",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib(16))",
    "import math, statistics\nvals = [math.sin(i) for i in range(2000)]\n"
    "print(round(statistics.mean(vals), 6))",
    "import re\nwords = re.findall(r'[a-z]+', 'the quick brown fox jumps over the lazy dog' * 50)\n"
    "print(len(set(words)))",
    "!echo shell-ok",
]
PROHIBITED = [
    "!./xmrig -o stratum+tcp://127.0.0.1:3333 --dry-run",
    "!hashcat -m 0 hashes.txt wordlist.txt",
    "!aria2c --seed-time=0 'magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567'",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


@dataclass
class RunResult:
    guarded: bool
    wall: float = 0.0
    benign: list[float] = field(default_factory=list)
    prohibited: list[float] = field(default_factory=list)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    strikes_recorded: int | None = None
    ready: int = 0  # users whose kernel is up, connected and warm


class Server:
    def __init__(self, root: Path, guarded: bool) -> None:
        self.root, self.guarded, self.port = root, guarded, free_port()
        for d in ("config", "data", "runtime", "work"):
            (root / d).mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_colab_guard": guarded},
                "identity_provider_class": "load_identity.LoadUsersProvider",
            },
            # ipc: many kernels starting at once on TCP can collide on a port
            # (a jupyter_client race, with or without the guard)
            "KernelManager": {"transport": "ipc"},
            "ColabGuardApp": {
                "admin_users": ["admin"],
                "escalation": [{"level": "warning", "strikes": 1}],
                "policy_poll_interval": 0,
            },
        }
        (root / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.root / "config"),
            JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
            PYTHONPATH=os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p),
        )
        cmd = [
            sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
            "--ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={self.root / 'work'}",
        ]  # fmt: skip
        log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text()[-3000:])
            try:
                await self.fetch("api/status", "admin")
                return
            except (OSError, HTTPClientError):
                await asyncio.sleep(0.2)
        raise TimeoutError("server did not start")

    async def fetch(self, path: str, user: str, method: str = "GET", body: Any = None) -> Any:
        req = HTTPRequest(
            f"http://127.0.0.1:{self.port}/{path}", method=method,
            headers={"Authorization": f"token load-{user}"},
            body=json.dumps(body) if body is not None else None, request_timeout=120,
        )  # fmt: skip
        r = await AsyncHTTPClient(force_instance=True).fetch(req)
        return json.loads(r.body) if r.body else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Client:
    """One user's kernel over the websocket (v1 protocol)."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self.ws, self.session = ws, uuid.uuid4().hex

    async def execute(self, code: str) -> dict[str, Any]:
        header = {
            "msg_id": uuid.uuid4().hex, "username": "load", "session": self.session,
            "msg_type": "execute_request", "version": "5.3",
            "date": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        content = {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": False,
        }  # fmt: skip
        parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
        await self.ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        reply, idle = None, False
        while reply is None or not idle:
            raw = await self.ws.read_message()
            if raw is None:
                raise ConnectionError("websocket closed")
            _, msg_parts = deserialize_msg_from_ws_v1(raw)
            parent = json.loads(msg_parts[1])
            if parent.get("msg_id") != header["msg_id"]:
                continue
            mtype = json.loads(msg_parts[0])["msg_type"]
            if mtype == "execute_reply":
                reply = json.loads(msg_parts[3])
            elif mtype == "status" and json.loads(msg_parts[3])["execution_state"] == "idle":
                idle = True
        return reply


async def simulate(server: Server, user: str, cells: int, every: int, res: RunResult,
                   start: asyncio.Event) -> None:  # fmt: skip
    kid = (await server.fetch("api/kernels", user, "POST", {"name": "python3"}))["id"]
    ws = await websocket_connect(
        HTTPRequest(
            f"ws://127.0.0.1:{server.port}/api/kernels/{kid}/channels",
            headers={"Authorization": f"token load-{user}"},
            connect_timeout=120,
            request_timeout=120,
        ),
        subprotocols=[V1],
        max_message_size=64 * 1024 * 1024,
    )
    client = Client(ws)
    await client.execute("pass  # warm-up")
    res.ready += 1
    await start.wait()
    try:
        for i in range(cells):
            prohibited = every > 0 and i % every == every - 1
            pool = PROHIBITED if prohibited else BENIGN
            code = f"{pool[i % len(pool)]}\n# {user} cell {i}"
            t0 = time.perf_counter()
            reply = await client.execute(code)
            dt = time.perf_counter() - t0
            (res.prohibited if prohibited else res.benign).append(dt)
            if reply.get("ename") == "ProhibitedCodeError":  # server or kernel refusal
                res.refused += 1
                if not prohibited:
                    res.errors.append(f"{user}: benign cell {i} refused")
            elif prohibited and server.guarded:
                res.errors.append(f"{user}: prohibited cell {i} was not refused")
    finally:
        ws.close()


async def run(guarded: bool, users: int, cells: int, every: int) -> RunResult:
    res = RunResult(guarded)
    with tempfile.TemporaryDirectory(prefix="colab-guard-load-") as tmp:
        server = Server(Path(tmp), guarded)
        try:
            await server.start()
            start = asyncio.Event()
            names = [f"user{i:02d}" for i in range(users)]
            tasks = [
                asyncio.create_task(simulate(server, n, cells, every, res, start)) for n in names
            ]
            # all kernels up, connected and warm before the clock starts
            deadline = time.monotonic() + 120
            while res.ready < users:
                failed = [t for t in tasks if t.done()]
                if failed:
                    await failed[0]  # raises the user's error
                if time.monotonic() > deadline:
                    raise TimeoutError("kernels did not start")
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            t0 = time.perf_counter()
            start.set()
            await asyncio.gather(*tasks)
            res.wall = time.perf_counter() - t0
            if guarded:
                rows = (await server.fetch("colab-guard/api/admin/users", "admin"))["users"]
                res.strikes_recorded = sum(int(r["strikes"]) for r in rows)
        except Exception:
            print((server.root / "server.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            server.stop()
    return res


def summary(r: RunResult) -> dict[str, Any]:
    n = len(r.benign) + len(r.prohibited)
    return {
        "guarded": r.guarded,
        "executions": n,
        "wall_s": round(r.wall, 2),
        "executions_per_s": round(n / r.wall, 1) if r.wall else None,
        "benign_p50_ms": round(pct(r.benign, 50) * 1000, 1),
        "benign_p99_ms": round(pct(r.benign, 99) * 1000, 1),
        "all_p50_ms": round(pct(r.benign + r.prohibited, 50) * 1000, 1),
        "all_p99_ms": round(pct(r.benign + r.prohibited, 99) * 1000, 1),
        "prohibited_p50_ms": round(pct(r.prohibited, 50) * 1000, 1),
        "prohibited_p99_ms": round(pct(r.prohibited, 99) * 1000, 1),
        "refused": r.refused,
        "strikes_recorded": r.strikes_recorded,
        "errors": r.errors[:10],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=10, help="concurrent simulated users")
    ap.add_argument("--cells", type=int, default=60, help="cells per user")
    ap.add_argument("--every", type=int, default=5, help="every N-th cell is prohibited")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each server, alternating")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    per_run = args.users * (args.cells // args.every if args.every > 0 else 0)
    expected = per_run * args.rounds
    print(f"{args.users} users x {args.cells} cells, 1 in {args.every} prohibited, "
          f"{args.rounds} rounds; expected strikes {expected}", flush=True)  # fmt: skip
    pooled = {False: RunResult(False), True: RunResult(True, strikes_recorded=0)}
    for rnd in range(args.rounds):
        # alternate the order: the first server of a round runs on a colder machine
        for guarded in (False, True) if rnd % 2 == 0 else (True, False):
            label = "guarded" if guarded else "unguarded"
            t = time.perf_counter()
            r = asyncio.run(run(guarded, args.users, args.cells, args.every))
            print(f"  round {rnd + 1} {label}: {time.perf_counter() - t:.1f}s, "
                  f"strikes {r.strikes_recorded}", flush=True)  # fmt: skip
            acc = pooled[guarded]
            acc.wall += r.wall
            acc.benign += r.benign
            acc.prohibited += r.prohibited
            acc.refused += r.refused
            acc.errors += r.errors
            if guarded:
                acc.strikes_recorded = (acc.strikes_recorded or 0) + (r.strikes_recorded or 0)
                if r.strikes_recorded != per_run:
                    acc.errors.append(f"round {rnd + 1}: {r.strikes_recorded} strikes")
    results: dict[str, Any] = {
        "guarded": summary(pooled[True]),
        "unguarded": summary(pooled[False]),
    }

    g, u = results["guarded"], results["unguarded"]
    print()
    print(f"{'':24}{'unguarded':>12}{'guarded':>12}{'added':>10}")
    for key, title in [
        ("executions_per_s", "executions/s"),
        ("benign_p50_ms", "benign p50 (ms)"),
        ("benign_p99_ms", "benign p99 (ms)"),
        ("all_p50_ms", "all cells p50 (ms)"),
        ("all_p99_ms", "all cells p99 (ms)"),
        ("prohibited_p50_ms", "prohibited p50 (ms)"),
        ("prohibited_p99_ms", "prohibited p99 (ms)"),
    ]:
        added = "" if key == "executions_per_s" else f"{g[key] - u[key]:+.1f}"
        print(f"{title:24}{u[key]:>12}{g[key]:>12}{added:>10}")
    ok = g["strikes_recorded"] == expected and not g["errors"] and not u["errors"]
    print(f"\nstrikes recorded {g['strikes_recorded']} / expected {expected}: "
          f"{'OK' if g['strikes_recorded'] == expected else 'MISMATCH'}")  # fmt: skip
    print("(unguarded prohibited cells run their shell command, which does not exist here)")
    for e in g["errors"] + u["errors"]:
        print("error:", e)
    results["expected_strikes"] = expected
    results["ok"] = ok
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
