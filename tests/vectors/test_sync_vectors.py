"""tests/vectors/sync.json through both sync machines: roost.protocol.sync.RoomSync and the browser client's
src/roost/web/sync.js (under Node). Each machine's observed actions must equal the file's; then random
traces, fed to both, must come out the same (a case nobody wrote down is still one rule).

The drift cases of issue 15 are in the file by name: a page with a hole and an empty page below the head
are a Resync in both clients (roost.js used to poll every 500 ms, or re-read with no pause, forever).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roost.protocol import sync
from roost.protocol.errors import UsageError
from roost.protocol.sync import Accepted, Action, CaughtUp, Deliver, Fetch, Resync, RoomSync, State
from roost.protocol.types import Position

from .js import run_js

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "sync.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
CHECKED = ("actions", "returns", "raises", "state", "last", "buffered", "buffer_overflows")


@dataclass(frozen=True)
class Item:
    seq: int


def _position(p: list[Any] | None) -> Position | None:
    return None if p is None else Position(p[0], p[1], p[2])


def _unposition(p: Position | None) -> list[Any] | None:
    return None if p is None else [p.epoch, p.head, p.first]


def _encode(action: Action[Item]) -> list[Any]:
    if isinstance(action, Accepted):
        return ["accepted", _unposition(action.position)]
    if isinstance(action, Deliver):
        return ["deliver", [item.seq for item in action.items]]
    if isinstance(action, Fetch):
        return ["fetch", action.after, action.limit]
    if isinstance(action, CaughtUp):
        return ["caught_up", action.seq]
    if isinstance(action, Resync):
        return ["resync", int(action.code), action.reason, _unposition(action.position)]
    raise AssertionError(f"not an action: {action!r}")


def _step(machine: RoomSync[Item], step: dict[str, Any]) -> dict[str, Any]:
    returns: bool | None = None
    raises: str | None = None
    try:
        match step["do"]:
            case "start":
                machine.start()
            case "live":
                returns = machine.live(Item(step["seq"]))
            case "page":
                position = _position(step["position"])
                assert position is not None
                machine.page([Item(s) for s in step["seqs"]], position)
            case "fetch_failed":
                machine.fetch_failed()
            case "dropped":
                machine.dropped(step["count"])
            case "head_seen":
                position = _position(step["position"])
                assert position is not None
                machine.head_seen(position)
            case "close":
                machine.close()
            case other:
                raise AssertionError(f"unknown input {other!r}")
    except UsageError:
        raises = "UsageError"
    return {
        "returns": returns,
        "raises": raises,
        "actions": [_encode(a) for a in machine.take_actions()],
        "state": machine.state.value,
        "last": machine.last,
        "buffered": machine.buffered,
        "buffer_overflows": machine.buffer_overflows,
    }


def run_python(case: dict[str, Any]) -> dict[str, Any]:
    """The Python machine's observations, in run_js.mjs's encoding."""
    m = case["machine"]
    kwargs = {"page_limit": m.get("page_limit", 500), "max_buffer": m.get("max_buffer", 10_000)}
    try:
        if m["resumed"]:
            machine: RoomSync[Item] = RoomSync[Item].resumed(m["cursor"], m["epoch"], **kwargs)
        else:
            machine = RoomSync(m["cursor"], m["epoch"], **kwargs)
    except UsageError:
        return {"raises": "UsageError", "steps": []}
    return {"raises": None, "steps": [_step(machine, step) for step in case.get("steps", [])]}


def check(case: dict[str, Any], observed: dict[str, Any], who: str) -> None:
    assert observed["raises"] == case.get("raises"), f"{who}: {case['name']}: machine construction"
    for i, (step, seen) in enumerate(zip(case.get("steps", []), observed["steps"], strict=True)):
        expected = {key: step[key] for key in CHECKED if key in step}
        if step["do"] != "live":
            expected.setdefault("returns", None)
        expected.setdefault("raises", None)
        got = {key: seen[key] for key in expected}
        assert got == expected, f"{who}: {case['name']}: step {i} ({step['do']})"


@pytest.fixture(scope="module")
def js_observed() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = run_js({"sync": CASES})["sync"]
    return result


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{i}-{case['name'][:60]}" for i, case in enumerate(cases)]


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids(CASES))
def test_python_room_sync_follows_the_vectors(index: int) -> None:
    case = CASES[index]
    check(case, run_python(case), "python")


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids(CASES))
def test_js_room_sync_follows_the_vectors(index: int, js_observed: list[dict[str, Any]]) -> None:
    check(CASES[index], js_observed[index], "sync.js")


def test_the_vectors_cover_every_input_action_and_state() -> None:
    steps = [step for case in CASES for step in case.get("steps", [])]
    inputs = {step["do"] for step in steps}
    assert inputs == {"start", "live", "page", "fetch_failed", "dropped", "head_seen", "close"}
    kinds = {action[0] for step in steps for action in step["actions"]}
    assert kinds == {"fetch", "accepted", "deliver", "caught_up", "resync"}
    states = {run["state"] for case in CASES for run in run_python(case)["steps"]}
    assert states >= {state.value for state in State} - {"idle"}
    names = " ".join(case["name"] for case in CASES)
    assert "a page with a hole" in names and "an empty page below the head" in names


def test_both_machines_have_the_same_names() -> None:
    """Line for line: the same exports, methods (private ones too) and states, so a change shows in both."""
    js = run_js({"sync_names": True})["sync_names"]
    exports = set(sync.__all__) - {"Action", "Sequenced"}  # types only: nothing to export in JavaScript
    assert set(js["exports"]) == exports
    methods = {name for name in vars(RoomSync) if not name.startswith("__")}
    assert set(js["methods"]) == methods
    assert js["states"] == [[state.name, state.value] for state in State]


# ---- random traces: the two machines answer every input alike ----------------------------------


def _trace(rng: random.Random) -> dict[str, Any]:
    """Inputs a caller could produce: a store that grows (and maybe trims or is recreated), live messages
    that may come late, twice or not at all, reads answered from the store at some moment, failed reads."""
    store = rng.randint(0, 6)
    first, epoch = 1, "e1"
    cursor = rng.randint(0, store)
    resumed = rng.random() < 0.5
    machine: RoomSync[Item]
    kwargs = {"page_limit": rng.randint(1, 4), "max_buffer": rng.randint(1, 6)}
    if resumed:
        machine = RoomSync[Item].resumed(cursor, epoch, **kwargs)
    else:
        machine = RoomSync(cursor, rng.choice([epoch, None]), **kwargs)
    case: dict[str, Any] = {"name": "random", "machine": {"cursor": cursor, "epoch": machine.epoch,
                                                           "resumed": resumed, **kwargs}, "steps": []}
    in_flight: list[int] = []
    fetch: list[Any] | None = None
    snapshot = (store, first, epoch)
    """The store when the outstanding Fetch was issued: a read may answer from then, older than live."""
    if not resumed:
        case["steps"].append({"do": "start"})
        fetch = _step(machine, {"do": "start"})["actions"][-1]
    for _ in range(rng.randint(5, 40)):
        roll = rng.random()
        if roll < 0.3:
            store += 1
            in_flight.append(store)
            continue
        if roll < 0.55 and in_flight:
            seq = in_flight.pop(rng.randrange(len(in_flight))) if rng.random() < 0.3 else in_flight.pop(0)
            if rng.random() < 0.15:
                in_flight.append(seq)  # delivered twice
            step: dict[str, Any] = {"do": "live", "seq": seq}
        elif roll < 0.75 and fetch is not None:
            after, limit = fetch[1], fetch[2]
            head, low, era = snapshot if rng.random() < 0.5 else (store, first, epoch)
            lo = max(after, low - 1)
            seqs = list(range(lo + 1, min(head, lo + limit) + 1))
            if rng.random() < 0.05 and len(seqs) > 1:
                seqs.pop(rng.randrange(len(seqs) - 1))  # a store that breaks its contract
            step = {"do": "page", "seqs": seqs, "position": [era, head, low]}
        elif roll < 0.8:
            step = {"do": "fetch_failed"}
        elif roll < 0.85:
            step = {"do": "dropped", "count": rng.randint(0, 2)}
        elif roll < 0.93:
            step = {"do": "head_seen", "position": [epoch, store, first]}
        elif roll < 0.96:
            first = min(store + 1, first + rng.randint(1, 3))  # retention trims
            continue
        elif roll < 0.98:
            epoch, store, first, in_flight = "e2", rng.randint(0, 3), 1, []  # the room is recreated
            continue
        else:
            step = {"do": "close"}
        case["steps"].append(step)
        fetches = [a for a in _step(machine, step)["actions"] if a[0] == "fetch"]
        if fetches:
            fetch, snapshot = fetches[-1], (store, first, epoch)
        elif step["do"] == "page":
            fetch = None
    return case


def test_random_traces_give_the_same_actions_in_both_machines() -> None:
    rng = random.Random(15)
    traces = [_trace(rng) for _ in range(400)]
    js = run_js({"sync": traces})["sync"]
    for i, (trace, seen) in enumerate(zip(traces, js, strict=True)):
        assert seen == run_python(trace), f"trace {i} differs:\n{json.dumps(trace)}"
    kinds = {action[0] for run in js for step in run["steps"] for action in step["actions"]}
    assert kinds == {"fetch", "accepted", "deliver", "caught_up", "resync"}, "the traces miss an action"
