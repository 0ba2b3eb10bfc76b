"""What every process a node starts needs: the node's code on its path, and an end when the node ends.

Two kinds of child run Roost's code (the search indexer, search/worker.py, and the workers of
``roost serve --workers``, workers/child.py); both must import the same tree as their parent and must not
outlive it, however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Final

_PR_SET_PDEATHSIG: Final = 1


def child_env() -> dict[str, str]:
    """The parent's environment, with the directory ``roost`` was imported from first on the path (a parent started
    from a source tree runs the same code in its children)."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def die_with_parent(parent: int) -> None:
    """Linux: the kernel sends SIGTERM when the parent ends, however it ends (``kill -9`` included), even while the
    child is still starting. A parent that died before this call would tell nobody: the child stops at once."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
