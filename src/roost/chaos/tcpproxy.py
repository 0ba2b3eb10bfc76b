"""A TCP proxy the test controls: put it between a node and its broker, then cut or blackhole the link.

``cut()`` closes every proxied connection and refuses new ones (a broker that died, a firewall that
resets). ``blackhole()`` keeps the connections open but forwards nothing either way, and new
connections are accepted and left hanging (a partition: packets silently dropped). ``heal()`` forwards
again; data held during a blackhole is then delivered, as TCP retransmission would.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self._refusing = True
        self._close_all()

    def blackhole(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._refusing = False
        self._flowing.set()

    def _close_all(self) -> None:
        for pair in list(self._pairs):
            for writer in pair:
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()  # RST, not a polite FIN: like a connection torn by the network
        self._pairs.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:  # so that aclose() ends a connection still waiting for a blackhole to heal
            self._tasks.add(me)
            me.add_done_callback(self._tasks.discard)
        if self._refusing:
            client_writer.transport.abort()
            return
        try:
            await self._flowing.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.target_port)
        except (OSError, asyncio.CancelledError):
            client_writer.transport.abort()
            return
        pair = (client_writer, upstream_writer)
        self._pairs.add(pair)
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, client_writer)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # aclose(): the connection ends below; asyncio would log a cancelled handler as an error
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                # Pass the end on (a half-close, as TCP does): a peer that waits for the other side to close
                # first (asyncpg's close() waits for the server's) would otherwise wait forever.
                with contextlib.suppress(Exception):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            await self._flowing.wait()
            if writer.transport.is_closing():
                return
            writer.write(data)
            await writer.drain()
