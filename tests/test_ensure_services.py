"""scripts/ensure-services.sh brings a stock machine to what the suite needs, or says in one line why not.

The PostgreSQL part is proved on a cluster of our own made with `pg_createcluster` defaults (scram for
host connections, no database "test"), on a free port, dropped afterwards: the shared :5432 server
is already set up and would prove nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from roost.chaos.infra import free_port

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-services.sh"


def run_script(
    *services: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the script from stdin, so a user who cannot read the checkout can still run it."""
    command = ["/bin/bash", "-s", *services]
    if user is not None:
        runuser = shutil.which("runuser")
        assert runuser, "runuser (util-linux) is needed to run the script as another user"
        command = [runuser, "-u", user, "--", *command]
    return subprocess.run(
        command,
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


async def can_connect(port: int, database: str) -> bool:
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}", timeout=5)
    except (asyncpg.PostgresError, OSError):
        return False
    try:
        return await conn.fetchval("select current_database()") == database
    finally:
        await conn.close()


@pytest.fixture
def stock_cluster() -> Iterator[tuple[int, Path]]:
    """A PostgreSQL cluster as `pg_createcluster` makes it on Debian, not started; dropped afterwards."""
    assert os.geteuid() == 0, "this test creates a PostgreSQL cluster: run the suite as root (as CI does)"
    version = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]
    name = f"roost{uuid.uuid4().hex[:8]}"
    port = free_port()
    subprocess.run(["pg_createcluster", version, name, "--port", str(port)], check=True, capture_output=True)
    try:
        yield port, Path("/etc/postgresql") / version / name / "pg_hba.conf"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], check=True, capture_output=True)


def test_postgres_from_a_stock_cluster(stock_cluster: tuple[int, Path]) -> None:
    port, hba = stock_cluster
    stock_rules = hba.read_text()
    assert "scram-sha-256" in stock_rules and "roost test suite" not in stock_rules

    first = run_script("postgres", env={"ROOST_PG_PORT": str(port)})
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "ensure-services: ready: postgres"
    assert asyncio.run(can_connect(port, "test"))

    # Idempotent: a second run changes nothing and still succeeds.
    after_first = hba.read_text()
    second = run_script("postgres", env={"ROOST_PG_PORT": str(port)})
    assert second.returncode == 0, second.stderr
    assert hba.read_text() == after_first
    assert after_first.count("roost test suite") == 1
    assert after_first.endswith(stock_rules)  # the stock rules are kept, ours only come first

    # Narrow: only database "test" is opened without a password.
    assert not asyncio.run(can_connect(port, "postgres"))


def test_postgres_cluster_that_does_not_exist_is_one_line() -> None:
    result = run_script("postgres", env={"ROOST_PG_PORT": str(free_port())})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ensure-services: no PostgreSQL cluster")


def test_missing_tool_without_root_is_one_line() -> None:
    result = run_script("chromium", env={"PATH": "/nonexistent"}, user="nobody")
    assert result.returncode == 1
    assert result.stderr == (
        "ensure-services: chromium is missing and installing it needs root: run this as root, "
        "or install chromium yourself\n"
    )


def test_unknown_service_is_one_line() -> None:
    result = run_script("mysql")
    assert result.returncode == 1
    known = "redis, nats, postgres, chromium, node, promtool, fuse"
    assert result.stderr == f"ensure-services: unknown service 'mysql' ({known})\n"
