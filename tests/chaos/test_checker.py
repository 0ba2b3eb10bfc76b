"""The checker is itself tested: histories with a lost, duplicated, reordered or foreign message."""

from __future__ import annotations

from roost.chaos.checker import check
from roost.chaos.history import Delivery, Fault, History, Send, Stored


def good() -> History:
    stored = [Stored("r", 1, "a", "~join-1", "join")] + [Stored("r", i, "a", f"m{i}", "text") for i in range(2, 6)]
    sends = [Send("c1", "a", "r", f"m{i}", t=float(i), seq=i, t_ack=float(i)) for i in range(2, 6)]
    deliveries = [Delivery(c, "r", s.seq, s.cmid, float(s.seq)) for c in ("c1", "c2") for s in stored]
    return History(
        members={"c1": ["r"], "c2": ["r"]},
        users={"c1": "a", "c2": "b"},
        sends=sends,
        deliveries=deliveries,
        stored=stored,
        faults=[Fault("kill9", "node0", 1.0, 2.0, recovered_s=0.5)],
    )


def test_a_clean_history_passes() -> None:
    report = check(good())
    assert report.ok, report.violations
    assert report.messages == 4 and report.acked == 4 and report.delivered == 10
    assert "kill9 1" in report.table()


def test_a_lost_acked_message_is_caught() -> None:
    history = good()
    history.stored = [s for s in history.stored if s.cmid != "m5"]
    history.deliveries = [d for d in history.deliveries if d.cmid != "m5"]
    report = check(history)
    assert report.count("lost") == 1
    assert "m5" in report.violations[0].evidence[0]


def test_a_message_delivered_twice_is_caught() -> None:
    history = good()
    history.deliveries.insert(3, Delivery("c2", "r", 2, "m2", 9.0))
    history.deliveries.sort(key=lambda d: (d.client, d.t))
    report = check(history)
    assert report.count("duplicated") == 1 and not report.ok


def test_a_reordered_delivery_is_caught() -> None:
    history = good()
    c2 = [d for d in history.deliveries if d.client == "c2"]
    c2[2], c2[3] = c2[3], c2[2]
    history.deliveries = [d for d in history.deliveries if d.client == "c1"] + c2
    report = check(history)
    assert report.count("out_of_order") + report.count("missed") >= 1 and not report.ok


def test_a_foreign_delivery_is_caught() -> None:
    history = good()
    history.stored.append(Stored("secret", 1, "x", "~join-9", "join"))
    history.members["c3"] = ["secret"]
    history.deliveries.append(Delivery("c2", "secret", 1, "~join-9", 1.0))
    history.deliveries.append(Delivery("c3", "secret", 1, "~join-9", 1.0))
    report = check(history)
    assert report.count("foreign") == 1


def test_a_member_that_never_caught_up_is_caught() -> None:
    history = good()
    history.deliveries = [d for d in history.deliveries if not (d.client == "c2" and d.seq == 5)]
    report = check(history)
    assert report.count("missed") == 1


def test_a_message_stored_twice_and_a_store_hole_are_caught() -> None:
    history = good()
    history.stored.append(Stored("r", 7, "a", "m2", "text"))
    report = check(history)
    assert report.count("stored_twice") == 1 and report.count("store_hole") == 1


def test_an_unrecovered_fault_fails_the_run() -> None:
    history = good()
    history.faults.append(Fault("pause", "node0", 3.0, 4.0, recovered_s=None))
    report = check(history)
    assert not report.ok and report.unrecovered == 1


def test_failed_sends_are_counted_not_blamed() -> None:
    history = good()
    history.sends.append(Send("c1", "a", "r", "x1", t=9.0, error=4503))
    report = check(history)
    assert report.ok and report.failed == 1


def test_a_pending_send_must_be_stored_or_it_is_lost() -> None:
    history = good()
    history.sends.append(Send("c1", "a", "r", "m5", t=9.0))  # pending, but stored (as seq 5): fine
    assert check(history).ok
    history.sends.append(Send("c1", "a", "r", "x2", t=9.0))  # pending and nowhere: lost
    report = check(history)
    assert report.pending == 2 and report.count("lost") == 1
