"""Attachments: the ``Blobs`` port (port.py) and its two engines, what a file is (sniff.py), its display name
(names.py), image sizes and thumbnails (images.py), signed download links (links.py) and the leased sweeper
(sweeper.py). The rules of who may upload, attach and fetch are the service's (service/attachments.py).

Which engine a node uses (``--blobs``; docs/operations.md):

* ``local`` (the default): files under ``DATA_DIR/attachments``, this node's own disk. With several nodes each
  serves only what was uploaded to it: scale-out needs ``s3://``; a node over a shared store engine with local
  blobs says so at startup and in ``/readyz``'s warnings.
* ``s3://BUCKET[/PREFIX]``: an S3-compatible bucket (aiobotocore), shared by the nodes.
* ``off``: no attachments (uploads and downloads answer 4403).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ..protocol.errors import UsageError
from .port import Blobs

__all__ = ["FOLDER", "SPOOL", "Blobs", "open_blobs"]

FOLDER: Final = "attachments"
SPOOL: Final = ".spool"


async def open_blobs(
    url: str | None,
    data_dir: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    spool: str = SPOOL,
) -> Blobs | None:
    """The engine ``url`` names (see the module docstring); None when attachments are off. ``spool``: the folder
    (in ``DATA_DIR/attachments``) of uploads being received; each worker of ``roost serve --workers N`` has its
    own, since a node empties its spool when it starts (what a crash left) and the workers share the folder."""
    if url == "off":
        return None
    if url in (None, "", "local"):
        from .local import LocalBlobs

        return await LocalBlobs(Path(data_dir) / FOLDER, spool).start()
    assert url is not None
    if url.startswith("s3://") and url.removeprefix("s3://").partition("/")[0]:
        from .s3 import S3Blobs, S3Settings

        settings = S3Settings(url, endpoint, region, access_key, secret_key)
        return await S3Blobs(settings, Path(data_dir) / FOLDER / spool).start()
    raise UsageError(f"unsupported attachment store {url!r}: local, s3://BUCKET[/PREFIX] or off")
