#!/usr/bin/env python3
"""Vendor the web client's npm dependencies, verbatim, from src/roost/web/package-lock.json.

The page is plain ES modules served by the server itself (no bundler, no CDN), so a dependency is served from a
copy in the package: ``src/roost/web/vendor/<name>/``, the dependency's ES module build as npm installs it from the
lock (``npm ci`` checks the tarball against the lock's ``integrity``), plus its licence, and ``MANIFEST.json``
naming the version, the lock's integrity and each file's SHA-256 (tests/test_web_vendor.py holds the copy to it,
offline).

    python scripts/vendor_web.py           # after changing package.json and `npm install --package-lock-only`
    python scripts/vendor_web.py --check   # the copy is byte for byte what the lock installs (needs the registry)

Only @msgpack/msgpack is vendored today (roost.js's MessagePack codec, docs/protocol.md R-WIRE-10).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "src" / "roost" / "web"
VENDORED = {"@msgpack/msgpack": ("msgpack", "dist.esm", ("LICENSE",))}
"""npm package -> (folder under vendor/, the folder of its ES module build, extra files kept)."""


def _install(into: Path) -> Path:
    """``npm ci`` of the web folder's lock in ``into``; returns its node_modules."""
    for name in ("package.json", "package-lock.json"):
        shutil.copy(WEB / name, into / name)
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=into,
        check=True,
    )
    return into / "node_modules"


def _files(package: Path, build: str, extra: tuple[str, ...]) -> dict[str, bytes]:
    out = {str(p.relative_to(package / build)): p.read_bytes() for p in sorted((package / build).rglob("*.mjs"))}
    out.update({name: (package / name).read_bytes() for name in extra})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the vendored copy with the lock's packages")
    args = parser.parse_args()
    lock = json.loads((WEB / "package-lock.json").read_text())
    different = []
    with tempfile.TemporaryDirectory(prefix="roost-vendor-") as tmp:
        modules = _install(Path(tmp))
        for name, (folder, build, extra) in VENDORED.items():
            entry = lock["packages"][f"node_modules/{name}"]
            files = _files(modules / name, build, extra)
            target = WEB / "vendor" / folder
            manifest = {
                "package": name,
                "version": entry["version"],
                "integrity": entry["integrity"],
                "license": entry.get("license"),
                "build": build,
                "files": {path: hashlib.sha256(data).hexdigest() for path, data in files.items()},
            }
            text = json.dumps(manifest, indent=2) + "\n"
            if args.check:
                have = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} - {"MANIFEST.json"}
                if have != set(files) or (target / "MANIFEST.json").read_text() != text:
                    different.append(name)
                different += [f"{name}: {p}" for p, data in files.items() if (target / p).read_bytes() != data]
                continue
            shutil.rmtree(target, ignore_errors=True)
            for path, data in files.items():
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                (target / path).write_bytes(data)
            (target / "MANIFEST.json").write_text(text)
            print(f"vendored {name} {entry['version']} into {target.relative_to(WEB.parent.parent.parent)}")
    if different:
        print("the vendored copy differs from the lock: " + ", ".join(different), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
