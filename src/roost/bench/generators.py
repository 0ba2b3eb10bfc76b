"""The load generators a benchmark run can drive its servers with, and how to start each.

Two generators speak one interface (a JSON plan in, JSON lines out: see ``loadgen.py``) with one
measurement: ``python`` (``roost.bench.loadgen``, picows on uvloop) and ``node`` (``bench/gen_node``,
``ws`` on Node.js). Why two: the Python one saturates its core before the bare servers do on a
2-core machine, and a generator's own habits (how fast it reads, how it packs frames) change what a
server shows; the same plan through both tells the server's figures from the generator's. Every record
names the generator that produced it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

__all__ = ["GENERATORS", "argv", "c_source", "describe", "node_folder", "prepare"]

GENERATORS: Final = ("python", "node", "c")


def node_folder(peers: Path) -> Path:
    """The Node generator lives beside the peers folder: ``bench/gen_node`` for ``bench/peers``."""
    return peers.parent / "gen_node"


def c_source(peers: Path) -> Path:
    """The compiled generator's source lives beside the peers folder too: ``bench/gen_c/gen.c``."""
    return peers.parent / "gen_c" / "gen.c"


def argv(generator: str, peers: Path) -> list[str]:
    """The command that runs ``generator``; the plan follows on its stdin (the ``-`` argument)."""
    if generator == "python":
        return [sys.executable, "-m", "roost.bench.loadgen", "-"]
    if generator == "node":
        return [_node(), str(node_folder(peers) / "generator.js"), "-"]
    if generator == "c":
        return [sys.executable, "-m", "roost.bench.cgen", str(c_source(peers)), "-"]
    raise ValueError(f"unknown load generator {generator!r}: one of {', '.join(GENERATORS)}")


def describe(generator: str) -> str:
    """One line for reports: which generator, on what."""
    return {
        "python": "python (roost.bench.loadgen: picows on uvloop)",
        "node": "node (bench/gen_node/generator.js: ws on Node.js)",
        "c": "c (bench/gen_c/gen.c: epoll, driven by roost.bench.cgen; the fan-out ladder only)",
    }.get(generator, generator)


def prepare(generator: str, peers: Path) -> None:
    """Install what the generator needs before the first target: for ``node``, its locked dependencies
    (``install.sh`` runs ``npm ci`` from the lock file, and does nothing when node_modules is current)."""
    if generator == "c":
        from .cgen import build

        build(c_source(peers))  # compiled once per source content, before the first target
        return
    if generator != "node":
        return
    _node()
    script = node_folder(peers) / "install.sh"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: --peers must name bench/peers of a checkout")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("the node load generator needs Node.js (`node` on the PATH)")
    return node
