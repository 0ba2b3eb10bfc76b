"""Run vector inputs through the browser client's JavaScript modules with Node (tests/vectors/run_js.mjs).

Node is a test dependency like chromium (``apt-get install nodejs``; ``ROOST_NODE`` overrides the path):
without it these tests fail, they are never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).parent / "run_js.mjs"
NODE = os.environ.get("ROOST_NODE") or shutil.which("node") or "/usr/bin/node"


def run_js(request: dict[str, Any]) -> dict[str, Any]:
    """What the JavaScript modules did with ``request`` (``{"sync": cases, "codes": true, ...}``)."""
    proc = subprocess.run(
        [NODE, str(RUNNER)], input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"{NODE} {RUNNER.name} failed:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
