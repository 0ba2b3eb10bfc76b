"""docs/alerts.yml is valid Prometheus rules (promtool), its alerts fire when they should (promtool's unit
tests in tests/alerts_test.yml), and it only names metrics that Roost serves (docs/operations.md's table,
which tests/integration/test_metrics.py checks against a real scrape)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/ensure-services.sh promtool installs it (Debian's prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_rules_are_valid() -> None:
    result = promtool("check", "rules", "docs/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_alerts_fire_when_they_should() -> None:
    result = promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_name_only_metrics_roost_serves() -> None:
    served = set(re.findall(r"^\| `(roost_\w+)` \|", (ROOT / "docs" / "operations.md").read_text(), re.M))
    used = set(re.findall(r"\b(roost_\w+)", (ROOT / "docs" / "alerts.yml").read_text()))
    bare = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert bare and bare <= served, bare - served
