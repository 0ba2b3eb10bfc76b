"""The lock files are what `make run` and `make test` install, and they agree with pyproject.toml.

scripts/check-lock.py (run before every install and first in .ci/run) compares a fingerprint; these
tests check the substance: every declared requirement is pinned with hashes at a version it allows,
the runtime lock is the dev lock's subset at the same versions, and this very environment is the lock.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUN_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"


class Pin:
    def __init__(self, name: str, version: str, marker: Marker | None, hashes: int) -> None:
        self.name, self.version, self.marker, self.hashes = name, Version(version), marker, hashes

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> pin, from pip-compile's output (a requirement line continued by --hash lines)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            assert current is not None, f"{path.name}: a hash before any requirement"
            current.hashes += 1
            continue
        requirement = Requirement(line.rstrip("\\").strip())
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
        current = Pin(canonicalize_name(requirement.name), spec.version, requirement.marker, 0)
        pins[current.name] = current
    return pins


RUN = read_lock(RUN_LOCK)
DEV = read_lock(DEV_LOCK)


def declared(*groups: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        found += [Requirement(r) for r in project["optional-dependencies"][group]]
    return found


@pytest.mark.parametrize(("lock", "groups"), [(RUN, ()), (DEV, ("dev", "bench"))], ids=["run", "dev"])
def test_every_declared_requirement_is_pinned_at_a_version_it_allows(
    lock: dict[str, Pin], groups: tuple[str, ...]
) -> None:
    for requirement in declared(*groups):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pin = lock.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), f"{requirement} vs locked {pin.version}"


@pytest.mark.parametrize("lock", [RUN, DEV], ids=["run", "dev"])
def test_every_pin_has_hashes_and_the_installer_is_locked(lock: dict[str, Pin]) -> None:
    assert all(pin.hashes > 0 for pin in lock.values())
    assert "pip" in lock
    for build_requirement in map(Requirement, PYPROJECT["build-system"]["requires"]):
        pin = lock[canonicalize_name(build_requirement.name)]
        assert build_requirement.specifier.contains(pin.version), f"{build_requirement} vs locked {pin.version}"


def test_the_tools_are_pinned() -> None:
    """So that lint and the test runner cannot change under us (issue: mypy 2.4.1 arrived unasked)."""
    for tool in ("ruff", "mypy", "pytest", "pytest-asyncio", "hypothesis", "playwright", "pip-tools", "pip"):
        assert tool in DEV, tool


def test_runtime_lock_is_the_dev_lock_restricted() -> None:
    for name, pin in RUN.items():
        assert name in DEV, f"{name} is in run.txt but not dev.txt"
        assert DEV[name].version == pin.version, f"{name}: run.txt {pin.version}, dev.txt {DEV[name].version}"


def test_this_environment_is_the_dev_lock() -> None:
    """`make test` installed exactly the lock: every pinned package at its pinned version."""
    wrong = {}
    for name, pin in DEV.items():
        if not pin.applies():
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pin.version:
            wrong[name] = (str(pin.version), str(installed))
    assert wrong == {}, "installed versions differ from requirements-dev.txt (locked, installed)"


def copy_for_check(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check-lock.py", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for lock in ROOT.glob("requirements*"):
        shutil.copy(lock, tmp_path)
    return tmp_path


def check_lock(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "check-lock.py")], capture_output=True, text=True, timeout=60
    )


def test_check_lock_passes_on_the_committed_files(tmp_path: Path) -> None:
    result = check_lock(copy_for_check(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "edit",
    [
        ('"msgspec>=0.18"', '"msgspec>=0.18", "rich>=13"'),  # a dependency added without relocking
        ('"redis>=8.0"', '"redis>=9.0"'),  # a bound moved
        ('"py-spy>=0.4",', ""),  # an extra's dependency removed
    ],
    ids=["added", "bound", "removed"],
)
def test_check_lock_fails_with_one_clear_line_when_pyproject_changed(tmp_path: Path, edit: tuple[str, str]) -> None:
    root = copy_for_check(tmp_path)
    text = (root / "pyproject.toml").read_text()
    assert edit[0] in text
    (root / "pyproject.toml").write_text(text.replace(edit[0], edit[1], 1))
    result = check_lock(root)
    assert result.returncode == 1
    assert result.stderr == (
        "check-lock: requirements.txt does not match pyproject.toml (its dependencies changed since the lock "
        "was made): run 'make lock', then 'make test', and commit the lock files\n"
    )


def test_check_lock_ignores_settings_that_are_not_dependencies(tmp_path: Path) -> None:
    root = copy_for_check(tmp_path)
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace("timeout = 120", "timeout = 121"))
    assert check_lock(root).returncode == 0
