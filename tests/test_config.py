"""Settings come from defaults < a TOML file < ROOST_* variables < flags; mistakes are one line each; the
reference in docs/operations.md is what the code prints; a node started with a file obeys it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from roost.config_sources import ConfigError, reference, resolve

from .integration.procs import ServerProcess

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def roost(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    return subprocess.run(
        [sys.executable, "-m", "roost", *args], capture_output=True, text=True, timeout=30, env={**clean, **(env or {})}
    )


def test_each_source_overrides_the_one_before(tmp_path: Path) -> None:
    file = tmp_path / "roost.toml"
    file.write_text('port = 9001\nhost = "127.0.0.5"\nstore = "sqlite"\n[limits]\nsends_per_s = 10\nsend_burst = 20\n')
    env = {"ROOST_PORT": "9002", "ROOST_LIMIT_SEND_BURST": "30"}
    values, limits, source = resolve(str(file), env, {"port": "9003", "host": None}, ["heartbeat_s=5"])
    assert values["port"] == 9003 and source["port"] == "--port"  # flag over env over file
    assert values["host"] == "127.0.0.5" and source["host"] == str(file)
    assert values["store"] == "sqlite" and values["log_level"] == "INFO" and source["log_level"] == "default"
    assert limits["sends_per_s"] == 10.0 and isinstance(limits["sends_per_s"], float)
    assert limits["send_burst"] == 30 and source["limits.send_burst"] == "ROOST_LIMIT_SEND_BURST"
    assert limits["heartbeat_s"] == 5.0 and source["limits.heartbeat_s"] == "--limit"


def test_every_mistake_is_named(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('prot = 1\nport = "x"\nlog_format = "yaml"\n[limits]\nsend_per_s = 1\nheartbeat_s = "a"\n')
    with pytest.raises(ConfigError) as caught:
        resolve(str(file), {"ROOST_INSECURE_DEV_LOGIN": "perhaps", "ROOST_LIMIT_SENDS": "5"}, {}, ["nope"])
    assert caught.value.mistakes == [
        f"{file}: unknown setting 'prot'",
        f"{file}: port = 'x' is not an integer",
        f"{file}: log_format = 'yaml' is not one of text, json",
        f"{file}: unknown limit 'send_per_s'",
        f"{file}: limits.heartbeat_s = 'a' is not a number",
        "ROOST_INSECURE_DEV_LOGIN: insecure_dev_login = 'perhaps' is not true or false",
        "ROOST_LIMIT_SENDS: unknown limit 'sends'",
        "--limit 'nope': expected NAME=VALUE",
    ]


def test_workers_come_from_every_source_and_are_at_least_one(tmp_path: Path) -> None:
    """``workers`` and ``metrics_port_base`` (roost serve --workers N) are settings like the others: file, ROOST_*
    variable, flag; fewer than one worker (or a negative port base) is a mistake named in one line."""
    file = tmp_path / "roost.toml"
    file.write_text("workers = 4\nmetrics_port_base = 9100\n")
    values, _, source = resolve(str(file), {"ROOST_WORKERS": "3"}, {"workers": None, "metrics_port_base": None})
    assert values["workers"] == 3 and source["workers"] == "ROOST_WORKERS"
    assert values["metrics_port_base"] == 9100 and source["metrics_port_base"] == str(file)
    values, _, source = resolve(str(file), {"ROOST_WORKERS": "3"}, {"workers": "2"})
    assert values["workers"] == 2 and source["workers"] == "--workers"
    assert resolve(None, {}, {})[0]["workers"] == 1
    with pytest.raises(ConfigError) as caught:
        resolve(None, {"ROOST_WORKERS": "0", "ROOST_METRICS_PORT_BASE": "-1"}, {})
    assert caught.value.mistakes == [
        "ROOST_WORKERS: workers = '0' is less than 1",
        "ROOST_METRICS_PORT_BASE: metrics_port_base = '-1' is less than 0",
    ]


def test_config_check_and_show(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('secret = "hunter2"\n[limits]\nmax_body_bytes = 100\n')
    bad.write_text("[limits]\nmax_bodybytes = 100\n")
    assert roost("config", "check", str(good)).stdout == f"roost: {good} is valid\n"
    refused = roost("config", "check", str(bad))
    assert refused.returncode == 2
    assert refused.stderr == f"roost: error: {bad}: unknown limit 'max_bodybytes'\n"
    shown = roost("config", "show", "--config", str(good), "--port", "9100", env={"ROOST_LOG_FORMAT": "json"})
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout
    lines = {line.split(" = ")[0]: line for line in shown.stdout.splitlines() if " = " in line}
    assert lines["secret"].startswith('secret = "***"') and lines["secret"].endswith(f"# {good}")
    assert lines["port"].endswith("# --port") and lines["log_format"].endswith("# ROOST_LOG_FORMAT")
    assert lines["max_body_bytes"].startswith("max_body_bytes = 100 ")


def test_a_bad_file_stops_serve_with_one_line_per_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('prot = 1\n[limits]\nsends_per_s = "fast"\n')
    result = roost("serve", "--config", str(bad), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"roost: error: {bad}: unknown setting 'prot'",
        f"roost: error: {bad}: limits.sends_per_s = 'fast' is not a number",
    ]


def test_the_operations_doc_holds_the_generated_reference() -> None:
    doc = DOC.read_text()
    start, end = "<!-- config-reference:start -->\n", "\n<!-- config-reference:end -->"
    assert doc[doc.index(start) + len(start) : doc.index(end)] == reference()


async def test_a_node_obeys_its_file(tmp_path: Path) -> None:
    config = tmp_path / "roost.toml"
    config.write_text("[limits]\nmax_body_bytes = 10\n")
    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, "--config", str(config))
    await node.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(node.url + "/api/login", json={"name": "alice"}) as resp:
                token = (await resp.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(node.url + "/api/rooms", json={"room": "r"}, headers=headers) as resp:
                assert resp.status in (200, 201)
            body = {"cmid": "c1", "body": "more than ten bytes"}
            async with http.post(node.url + "/api/rooms/r/messages", json=body, headers=headers) as resp:
                assert resp.status == 413, await resp.text()
    finally:
        node.stop()
