"""The web client's vendored npm dependency (src/roost/web/vendor/msgpack) is what its lock names, unaltered.

Offline: the files against the manifest scripts/vendor_web.py wrote, the manifest against package-lock.json.
That the manifest's files are the package's own bytes is what ``python scripts/vendor_web.py --check`` shows
(it installs the lock with ``npm ci``, which checks the tarball's integrity, and compares).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEB = Path(__file__).resolve().parents[1] / "src" / "roost" / "web"
VENDOR = WEB / "vendor" / "msgpack"


def test_the_vendored_codec_is_the_locked_version() -> None:
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    entry = lock["packages"]["node_modules/@msgpack/msgpack"]
    assert manifest["package"] == "@msgpack/msgpack"
    assert (
        manifest["version"]
        == entry["version"]
        == wanted["@msgpack/msgpack"]
        == lock["packages"][""]["dependencies"]["@msgpack/msgpack"]
    )
    assert manifest["integrity"] == entry["integrity"]


def test_the_vendored_files_are_the_manifests() -> None:
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    assert present == set(manifest["files"]) and "LICENSE" in present
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() == digest, path


def test_the_client_imports_only_vendored_modules_that_exist() -> None:
    """encoding.js imports the codec by relative URL: those files must be in the copy (and so served)."""
    text = (WEB / "encoding.js").read_text()
    imported = [line.split('"')[1] for line in text.splitlines() if 'import("./vendor/' in line]
    assert imported and all((WEB / name).is_file() for name in imported), imported
