"""``roost`` on the command line: its version, and one clear line (no traceback) for each mistake in how
a server is started, including an unsafe one."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from roost.chaos.infra import wait_until


def roost(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    result = roost("--version")
    assert result.returncode == 0
    assert result.stdout == f"roost {version('roost')}\n"


def test_the_development_login_is_refused_on_a_public_address(tmp_path: Path) -> None:
    """[R-SEC-2] Development mode on a non-loopback host: one line and exit status 2."""
    result = roost("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("roost: error: --host 0.0.0.0 is not a loopback address")
    assert "--insecure-dev-login" in result.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--store", "foo://x"), 1, "roost: error: unsupported store URL 'foo://x'\n"),
        (("--log-level", "LOUD"), 2, "roost: error: --log-level: log_level = 'LOUD' is not one of DEBUG, INFO,"),
        (
            ("--store", "redis://127.0.0.1:6379/0?prefx=a"),
            1,
            "roost: error: unknown redis URL option 'prefx' (Roost's: keep, prefix, wait; passed to the driver: db,",
        ),
        (
            ("--store", "nats://127.0.0.1:4222?prefix=a&replica=3"),
            1,
            "roost: error: unknown nats URL option 'replica' (Roost's: keep, prefix, replicas, sync)",
        ),
        (
            ("--store", "kafka://127.0.0.1:9/t?partitons=3", "--bus", "redis://127.0.0.1:6379/0"),
            1,
            "roost: error: unknown kafka URL option 'partitons' (Roost's: fetch_wait_ms, partitions, prefix,",
        ),
    ],
    ids=["store-scheme", "log-level", "redis-option", "nats-option", "kafka-option"],
)
def test_a_mistake_is_one_line(tmp_path: Path, args: tuple[str, ...], status: int, message: str) -> None:
    result = roost("serve", "--port", "0", "--data-dir", str(tmp_path), *args)
    assert result.returncode == status
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(message.rstrip("\n"))


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = roost("serve", "--port", str(port), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"roost: error: cannot start on 127.0.0.1:{port}")
    assert "address already in use" in result.stderr


async def test_insecure_dev_login_starts_and_says_so(tmp_path: Path) -> None:
    """[R-SEC-2] With --insecure-dev-login it starts anyway and logs a WARNING that the login is open."""
    from .integration.procs import ServerProcess

    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, "--host", "0.0.0.0", "--insecure-dev-login")
    await node.start()
    try:
        log = node.log.read_text()
        assert re.search(r"WARNING roost \[[0-9a-f]{8}\] INSECURE: the development login is open on 0\.0\.0\.0", log), (
            log
        )
    finally:
        node.stop()


async def test_sigterm_is_honoured_while_the_broker_is_unreachable_at_startup(tmp_path: Path) -> None:
    """Nothing listens where the NATS store should be: the node keeps trying with a backoff (a line per
    attempt, not one every 200 ms), and SIGTERM still stops it at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "roost",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path),
                "--store",
                f"nats://127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_until("a first attempt at the engines", lambda: "engines do not answer" in log.read_text(), 30)
        await asyncio.sleep(2.0)  # the subject: the attempts of 2 s (0, 0.5, 1.5 s), not ten at 200 ms
        assert proc.poll() is None, log.read_text()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log.read_text().splitlines()
    assert sum("nats error" in line for line in lines) <= 1, lines
    assert 2 <= sum("engines do not answer" in line for line in lines) <= 4, lines  # 0.5, 1, 2 s apart
    assert any("stopped by a signal while starting" in line for line in lines), lines


async def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    import json

    from .integration.procs import ServerProcess

    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, "--log-format", "json")
    await node.start()
    node.stop()
    lines = [line for line in node.log.read_text().splitlines() if not line.startswith("roost: listening on")]
    events = [json.loads(line) for line in lines]
    assert all(set(e) >= {"ts", "level", "logger", "node", "msg"} for e in events)
    messages = [e["msg"] for e in events]
    assert any(m.startswith(f"roost {version('roost')} serving on") for m in messages), messages
    assert messages[-1] == "roost: stopped"
    assert len({e["node"] for e in events}) == 1


def test_chaos_names_an_unknown_fault_and_the_known_ones() -> None:
    out = roost("chaos", "--faults", "kill9,meteor", "--quiet")
    assert out.returncode == 2
    assert "unknown fault(s) meteor" in out.stderr and "powerloss" in out.stderr
