"""Each test session's own Redis and NATS clusters (``roost.chaos.rigs``), and a CLI to run them by hand.

Two test sessions on one machine never meet: each runs its own clusters (``for_session``), under
``<DIR>/session-<pid>``, and stops them when it ends; a session that died without stopping them has them
killed by the next one. Only ``ROOST_CLUSTER_DIR=DIR`` makes sessions share: they reuse the clusters
``python -m tests.clusters up --dir DIR`` left running there (and leave them running).

CLI::

    python -m tests.clusters up   [--dir DIR] [redis-cluster] [nats-cluster]
    python -m tests.clusters down [--dir DIR] [redis-cluster] [nats-cluster]
    python -m tests.clusters status [--dir DIR]

DIR defaults to ``<tmp>/roost-clusters``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from roost.chaos.rigs import (
    HOST,
    ClusterError,
    NatsCluster,
    NatsServer,
    Proc,
    RedisCluster,
    RedisServer,
    Rig,
    alive,
    kill_pid,
    mark,
    ours,
    poll_until,
    read_pid,
    redis_call,
)

__all__ = [
    "DEFAULT_DIR",
    "HOST",
    "ClusterError",
    "NatsCluster",
    "NatsServer",
    "Proc",
    "RedisCluster",
    "RedisServer",
    "Rig",
    "address",
    "base_dir",
    "for_session",
    "mark",
    "poll_until",
    "redis_call",
    "registered",
]

DEFAULT_DIR = Path(tempfile.gettempdir()) / "roost-clusters"
SHARED_DIR = os.environ.get("ROOST_CLUSTER_DIR", "")
"""A directory whose clusters (``python -m tests.clusters up --dir DIR``) every test session reuses."""


# ---- a session's clusters ----------------------------------------------------------------------

_ADDRESSES: dict[str, str] = {}
_BASES: dict[str, Path] = {}


def address(name: str) -> str:
    """Where this session's rig ``name`` ("redis-cluster", "nats-cluster", "kafka") listens, once its session
    fixture brought it up (``for_session``)."""
    try:
        return _ADDRESSES[name]
    except KeyError:
        raise ClusterError(f"{name} is not up: its session fixture starts it (tests/conftest.py)") from None


def base_dir(name: str) -> Path:
    """The directory of this session's rig ``name`` (its servers' data: tests that read what an engine wrote)."""
    try:
        return _BASES[name]
    except KeyError:
        raise ClusterError(f"{name} is not up: its session fixture starts it (tests/conftest.py)") from None


@contextlib.contextmanager
def registered(name: str, url: str) -> Iterator[str]:
    """``address(name)`` is ``url`` while this lasts."""
    _ADDRESSES[name] = url
    try:
        yield url
    finally:
        del _ADDRESSES[name]


R = TypeVar("R", bound=Rig)


@contextlib.contextmanager
def for_session(kind: type[R]) -> Iterator[R]:
    """A rig for one test session: its own, on ports the OS hands out, stopped and removed at the end; or,
    with ``ROOST_CLUSTER_DIR``, the one started there by hand (reused, left running)."""
    if SHARED_DIR:
        rig = kind(Path(SHARED_DIR))
        rig.reuse()
    else:
        _sweep(DEFAULT_DIR)
        rig = kind(DEFAULT_DIR / f"session-{os.getpid()}")
        rig.up()
    _BASES[kind.NAME] = rig.base
    try:
        with registered(kind.NAME, rig.url):
            yield rig
    finally:
        _BASES.pop(kind.NAME, None)
        if not SHARED_DIR:
            rig.down()
            shutil.rmtree(rig.base, ignore_errors=True)
            with contextlib.suppress(OSError):
                rig.base.parent.rmdir()  # the session's directory, once its last rig is gone


def _sweep(root: Path) -> None:
    """Kill what sessions that died without cleaning up left running under ``root``, and remove it."""
    for leftover in root.glob("session-*"):
        owner = leftover.name.removeprefix("session-")
        if owner.isdigit() and alive(int(owner)):
            continue
        for pidfile in leftover.rglob("pid"):
            pid = read_pid(pidfile)
            if pid is not None and alive(pid) and ours(pid):
                kill_pid(pid)
        shutil.rmtree(leftover, ignore_errors=True)


# ---- CLI ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.clusters", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("which", nargs="*", help="redis-cluster and/or nats-cluster (default: both)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    which = args.which or ["redis-cluster", "nats-cluster"]
    if unknown := set(which) - {"redis-cluster", "nats-cluster"}:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    rigs: list[RedisCluster | NatsCluster] = []
    if "redis-cluster" in which:
        rigs.append(RedisCluster(args.dir))
    if "nats-cluster" in which:
        rigs.append(NatsCluster(args.dir))
    for rig in rigs:
        label = "redis cluster" if isinstance(rig, RedisCluster) else "nats cluster"
        if args.command == "up":
            t0 = time.monotonic()
            started = rig.up()
            verb = "started" if started else "reused"
            print(f"{label}: {verb} in {time.monotonic() - t0:.1f}s, {rig.url} (dir {rig.base})")
        elif args.command == "down":
            rig.down()
            print(f"{label}: stopped")
        else:
            pids = {name: proc.pid for name, proc in rig.procs.items()}
            print(f"{label}: {'healthy' if rig.healthy() else 'NOT healthy'}, pids {pids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
