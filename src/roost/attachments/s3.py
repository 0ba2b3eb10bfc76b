"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, moto, ...) through aiobotocore: shared by every node.

``--blobs s3://BUCKET[/PREFIX]`` with ``--s3-endpoint`` (for anything but AWS), ``--s3-region`` and the keys
(``--s3-access-key``/``--s3-secret-key``, else botocore's usual sources: ``AWS_*`` variables, profiles, instance
roles). Objects are ``PREFIX<id>/blob``, ``PREFIX<id>/thumb`` and ``PREFIX<id>/meta``; the bucket is made at
startup if it does not exist (and the credentials may). A PUT is durable when S3 answers it: the ack of an upload
comes after. Every failure of the service or the network is ``Unavailable`` (4503); a missing object is None.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ..protocol.errors import Unavailable
from .port import BlobMeta, Opened, Part, decode_meta, encode_meta, valid_id

__all__ = ["S3Blobs", "S3Settings"]

T = TypeVar("T")
CHUNK: Final = 256 * 1024
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Settings:
    def __init__(
        self,
        url: str,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.region = region or "us-east-1"
        self.access_key = access_key
        self.secret_key = secret_key


class S3Blobs:
    shared = True

    def __init__(self, settings: S3Settings, spool: Path) -> None:
        self.settings = settings
        self.spool = spool
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> S3Blobs:
        s = self.settings
        self.spool.mkdir(parents=True, exist_ok=True)
        config = AioConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
        creator = get_session().create_client(
            "s3",
            endpoint_url=s.endpoint,
            region_name=s.region,
            aws_access_key_id=s.access_key,
            aws_secret_access_key=s.secret_key,
            config=config,
        )
        self._client = await self._stack.enter_async_context(creator)
        try:
            await self._call(lambda: self._client.head_bucket(Bucket=s.bucket))
        except Unavailable:
            await self._call(lambda: self._client.create_bucket(Bucket=s.bucket))
        return self

    def _key(self, blob_id: str, part: str) -> str:
        if not valid_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return f"{self.settings.prefix}{blob_id}/{part}"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except (TimeoutError, ClientError, BotoCoreError, OSError) as exc:
            raise Unavailable(f"attachment store (S3): {exc}") from None

    async def _get_or_none(self, key: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = await self._client.get_object(Bucket=self.settings.bucket, Key=key)
            return answer
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise Unavailable(f"attachment store (S3): {exc}") from None
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise Unavailable(f"attachment store (S3): {exc}") from None

    async def put(self, blob_id: str, part: Part, source: Path) -> None:
        data = await asyncio.to_thread(source.read_bytes)  # at most max_attachment_bytes
        key = self._key(blob_id, part)
        await self._call(lambda: self._client.put_object(Bucket=self.settings.bucket, Key=key, Body=data))

    async def put_meta(self, meta: BlobMeta) -> None:
        key, data = self._key(meta.id, "meta"), encode_meta(meta)
        await self._call(
            lambda: self._client.put_object(
                Bucket=self.settings.bucket, Key=key, Body=data, ContentType="application/json"
            )
        )

    async def meta(self, blob_id: str) -> BlobMeta | None:
        if not valid_id(blob_id):
            return None
        answer = await self._get_or_none(self._key(blob_id, "meta"))
        if answer is None:
            return None
        async with answer["Body"] as body:
            raw: bytes = await self._call(body.read)
        return decode_meta(raw)

    async def open(self, blob_id: str, part: Part) -> Opened | None:
        if not valid_id(blob_id):
            return None
        answer = await self._get_or_none(self._key(blob_id, part))
        if answer is None:
            return None
        return Opened(int(answer["ContentLength"]), self._chunks(answer["Body"]))

    async def _chunks(self, body: Any) -> AsyncGenerator[bytes, None]:
        async with body:
            while chunk := await self._call(lambda: body.read(CHUNK)):
                yield chunk

    async def ids(self) -> list[str]:
        found: set[str] = set()

        async def listing() -> None:
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=self.settings.prefix):
                for item in page.get("Contents", []):
                    blob_id = item["Key"].removeprefix(self.settings.prefix).partition("/")[0]
                    if valid_id(blob_id):
                        found.add(blob_id)

        await self._call(listing)
        return sorted(found)

    async def remove(self, blob_id: str) -> None:
        objects = [{"Key": self._key(blob_id, part)} for part in ("meta", "blob", "thumb")]  # the record first
        await self._call(
            lambda: self._client.delete_objects(Bucket=self.settings.bucket, Delete={"Objects": objects, "Quiet": True})
        )

    async def aclose(self) -> None:
        await self._stack.aclose()
