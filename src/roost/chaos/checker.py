"""The checker: with the store as ground truth, does a history keep Roost's contract?

Pure functions over a ``History``: no I/O. Each check returns violations, each with the smallest
piece of history that shows it, so a failure can be read without the rest of the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .history import Delivery, History, Send, Stored

__all__ = ["Report", "Violation", "check"]


@dataclass(frozen=True)
class Violation:
    kind: str
    """lost | duplicated | out_of_order | foreign | store_hole | wrong_seq | stored_twice | missed"""
    detail: str
    evidence: list[str]


@dataclass
class Report:
    messages: int = 0
    acked: int = 0
    failed: int = 0
    pending: int = 0
    delivered: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    recovery_s: list[float] = field(default_factory=list)
    unrecovered: int = 0
    violations: list[Violation] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for v in self.violations if v.kind == kind)

    @property
    def ok(self) -> bool:
        return not self.violations and self.unrecovered == 0

    def table(self) -> str:
        def pct(q: float) -> str:
            if not self.recovery_s:
                return "-"
            values = sorted(self.recovery_s)
            return f"{values[min(len(values) - 1, int(q * len(values)))]:.2f}"

        rows = [
            ("messages stored", f"{self.messages:,}"),
            ("sends acked", f"{self.acked:,}"),
            ("sends failed (reported to the sender)", f"{self.failed:,}"),
            ("sends pending at the end", f"{self.pending:,}"),
            ("deliveries", f"{self.delivered:,}"),
            ("faults", ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"),
            ("lost", str(self.count("lost") + self.count("missed"))),
            ("duplicated", str(self.count("duplicated") + self.count("stored_twice"))),
            ("out of order", str(self.count("out_of_order"))),
            ("foreign", str(self.count("foreign"))),
            ("store holes / wrong seqs", str(self.count("store_hole") + self.count("wrong_seq"))),
            ("recovery p50 / p99 / max (s)", f"{pct(0.5)} / {pct(0.99)} / {pct(1.0)}"),
            ("faults never recovered", str(self.unrecovered)),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)


def check(history: History) -> Report:
    report = Report()
    by_room: dict[str, list[Stored]] = defaultdict(list)
    for stored in history.stored:
        by_room[stored.room].append(stored)
    for room_messages in by_room.values():
        room_messages.sort(key=lambda s: s.seq)
    report.messages = sum(1 for s in history.stored if s.kind == "text")
    report.delivered = len(history.deliveries)
    for fault in history.faults:
        report.faults[fault.kind] = report.faults.get(fault.kind, 0) + 1
        if fault.recovered_s is None:
            report.unrecovered += 1
        else:
            report.recovery_s.append(fault.recovered_s)
    report.violations += _check_store(by_room)
    report.violations += _check_sends(history.sends, by_room, report)
    report.violations += _check_deliveries(history, by_room)
    return report


def _check_store(by_room: dict[str, list[Stored]]) -> list[Violation]:
    out: list[Violation] = []
    for room, messages in by_room.items():
        for expected, message in enumerate(messages, start=1):
            if message.seq != expected:
                out.append(
                    Violation(
                        "store_hole",
                        f"room {room}: seq {expected} missing or repeated in the store",
                        [f"store {room}: ... {[m.seq for m in messages[max(0, expected - 3) : expected + 2]]}"],
                    )
                )
                break
        seen: dict[tuple[str, str], int] = {}
        for message in messages:
            key = (message.sender, message.cmid)
            if key in seen:
                out.append(
                    Violation(
                        "stored_twice",
                        f"room {room}: {message.sender}/{message.cmid} stored twice",
                        [f"store {room} seq {seen[key]} and seq {message.seq}"],
                    )
                )
            seen[key] = message.seq
    return out


def _check_sends(sends: list[Send], by_room: dict[str, list[Stored]], report: Report) -> list[Violation]:
    out: list[Violation] = []
    index = {(s.room, s.sender, s.cmid): s for msgs in by_room.values() for s in msgs}
    for send in sends:
        stored = index.get((send.room, send.user, send.cmid))
        if send.seq is not None:
            report.acked += 1
            if stored is None:
                out.append(
                    Violation(
                        "lost",
                        f"acked message {send.cmid} (seq {send.seq}) is not in the store",
                        [_send_line(send), f"store {send.room}: no {send.user}/{send.cmid}"],
                    )
                )
            elif stored.seq != send.seq:
                out.append(
                    Violation(
                        "wrong_seq",
                        f"{send.cmid} acked as seq {send.seq}, stored as {stored.seq}",
                        [_send_line(send), f"store {send.room} seq {stored.seq}"],
                    )
                )
        elif send.error is not None:
            report.failed += 1
        else:
            report.pending += 1
            if stored is None:
                out.append(
                    Violation(
                        "lost",
                        f"send {send.cmid} was neither acked, failed nor stored",
                        [_send_line(send), f"store {send.room}: no {send.user}/{send.cmid}"],
                    )
                )
    return out


def _check_deliveries(history: History, by_room: dict[str, list[Stored]]) -> list[Violation]:
    out: list[Violation] = []
    per_client: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        per_client[(delivery.client, delivery.room)].append(delivery)
    for (client, room), got in per_client.items():
        if room not in history.members.get(client, []):
            out.append(
                Violation("foreign", f"{client} received from {room}, a room it is not in", [_delivery_line(got[0])])
            )
    for client, rooms in history.members.items():
        for room in rooms:
            got = per_client.get((client, room), [])
            expected = [m.seq for m in by_room.get(room, [])]
            out += _compare_stream(client, room, got, expected)
    return out


def _compare_stream(client: str, room: str, got: list[Delivery], expected: list[int]) -> list[Violation]:
    out: list[Violation] = []
    seen: set[int] = set()
    last = 0
    for i, delivery in enumerate(got):
        if delivery.seq in seen:
            out.append(
                Violation(
                    "duplicated",
                    f"{client} got {room} seq {delivery.seq} twice",
                    [_delivery_line(d) for d in got[max(0, i - 2) : i + 1]],
                )
            )
            break
        if delivery.seq < last:
            out.append(
                Violation(
                    "out_of_order",
                    f"{client} got {room} seq {delivery.seq} after {last}",
                    [_delivery_line(d) for d in got[max(0, i - 2) : i + 1]],
                )
            )
            break
        if delivery.seq != last + 1:
            out.append(
                Violation(
                    "missed",
                    f"{client} skipped {room} seqs {last + 1}..{delivery.seq - 1}",
                    [_delivery_line(d) for d in got[max(0, i - 1) : i + 1]],
                )
            )
            break
        seen.add(delivery.seq)
        last = delivery.seq
    else:
        if expected and last < expected[-1]:
            out.append(
                Violation(
                    "missed",
                    f"{client} ended {room} at seq {last}, the store has {expected[-1]}",
                    [_delivery_line(got[-1])] if got else [f"{client} received nothing from {room}"],
                )
            )
    return out


def _send_line(send: Send) -> str:
    return f"send {send.client}({send.user}) {send.room} cmid={send.cmid} t={send.t:.3f} ack_seq={send.seq}"


def _delivery_line(delivery: Delivery) -> str:
    return f"deliver {delivery.client} {delivery.room} seq={delivery.seq} cmid={delivery.cmid} t={delivery.t:.3f}"
