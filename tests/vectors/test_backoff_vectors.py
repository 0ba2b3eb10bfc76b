"""tests/vectors/backoff.json against both clients: roost.client.backoff and the browser client's
src/roost/web/backoff.js (under Node). One rule, [d/2, d], with the same parameters as defaults on both
sides and the same waits for the same random draws; docs/protocol.md section 11 states the same numbers."""

from __future__ import annotations

import inspect
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roost.client import backoff as rules
from roost.client.connection import Client

from .js import run_js

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "backoff.json").read_text(encoding="utf-8"))
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


class Draws(random.Random):
    """A random source that returns the vector's draws, so both clients can be asked for exact waits."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__()
        self.draws: Iterator[float] = iter(draws)

    def random(self) -> float:
        return next(self.draws)


def _rule(name: str) -> dict[str, float]:
    rule: dict[str, float] = VECTORS[name]
    return rule


@pytest.fixture(scope="module")
def js() -> dict[str, Any]:
    result: dict[str, Any] = run_js({"backoff": VECTORS})["backoff"]
    return result


def test_python_parameters_are_the_vectors() -> None:
    for name, rule in (("reconnect", rules.RECONNECT), ("send_retry", rules.SEND_RETRY)):
        assert (rule.initial_s, rule.factor, rule.max_s) == tuple(_rule(name).values()), name
    client = inspect.signature(Client).parameters
    assert client["initial_backoff_s"].default == _rule("reconnect")["initial_s"]
    assert client["max_backoff_s"].default == _rule("reconnect")["max_s"]
    retry = inspect.signature(rules.retry_delay).parameters
    send = _rule("send_retry")
    assert (retry["initial_s"].default, retry["max_s"].default) == (send["initial_s"], send["max_s"])


def test_js_parameters_are_the_vectors(js: dict[str, Any]) -> None:
    for name in ("reconnect", "send_retry"):
        rule = _rule(name)
        ms = {"initialMs": rule["initial_s"] * 1000, "factor": rule["factor"], "maxMs": rule["max_s"] * 1000}
        assert js[name] == ms, name
    reconnect, retry = _rule("reconnect"), _rule("send_retry")
    assert js["client"] == {
        "initialBackoffMs": reconnect["initial_s"] * 1000,
        "maxBackoffMs": reconnect["max_s"] * 1000,
        "retryInitialMs": retry["initial_s"] * 1000,
        "retryMaxMs": retry["max_s"] * 1000,
    }


def test_python_waits_are_the_vectors() -> None:
    for case in VECTORS["nth_delay"]:
        r = _rule(case["rule"])
        got = rules.nth_delay(case["n"], r["initial_s"], r["factor"], r["max_s"], Draws([case["u"]]))
        assert got == pytest.approx(case["delay_s"], abs=1e-9), case
    delays = rules.backoff(rng=Draws(VECTORS["backoff"]["u"]))
    assert [next(delays) for _ in VECTORS["backoff"]["u"]] == pytest.approx(VECTORS["backoff"]["delays_s"], abs=1e-9)
    for case in VECTORS["retry_delay"]:
        got = rules.retry_delay(case["retry_after_s"], case["failures"], Draws([case["u"]]))
        assert got == pytest.approx(case["delay_s"], abs=1e-9), case


def test_js_waits_are_the_vectors(js: dict[str, Any]) -> None:
    assert js["nth_delay"] == pytest.approx([c["delay_s"] for c in VECTORS["nth_delay"]], abs=1e-9)
    assert js["backoff"] == pytest.approx(VECTORS["backoff"]["delays_s"], abs=1e-9)
    assert js["retry_delay"] == pytest.approx([c["delay_s"] for c in VECTORS["retry_delay"]], abs=1e-9)


def test_every_wait_lies_in_half_to_whole_of_its_ceiling() -> None:
    """The rule itself, for any draw: no client comes back sooner than d/2 (not "full jitter", [0, d])."""
    rng = random.Random(11)
    for n in range(12):
        r = _rule("reconnect")
        d = min(r["max_s"], r["initial_s"] * r["factor"] ** n)
        for _ in range(50):
            assert d / 2 <= rules.nth_delay(n, r["initial_s"], r["factor"], r["max_s"], rng) <= d


def test_protocol_doc_states_the_same_rule() -> None:
    """Section 11 names the parameters of both waits and the [d/2, d] draw."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 11.") : text.index("## 12.")]
    section = re.sub(r"\s+", " ", section)
    assert "[d/2, d]" in section
    for name in ("reconnect", "send_retry"):
        r = _rule(name)
        assert f"{r['initial_s']:g} s doubling" in section, name
        assert re.search(rf"{r['initial_s']:g} s doubling[^.]*? {r['max_s']:g} s", section), name
