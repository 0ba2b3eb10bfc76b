"""Unit tests for RoomSync, the sans-I/O catch-up machine: one or more tests per numbered rule in its docstring.

Plain functions: no asyncio, no sockets, no clock. Each test feeds inputs and inspects ``take_actions()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from roost.protocol.codes import Code
from roost.protocol.errors import UsageError
from roost.protocol.sync import Accepted, CaughtUp, Deliver, Fetch, Resync, RoomSync, State
from roost.protocol.types import Position

EPOCH = "e1"


@dataclass(frozen=True)
class Item:
    seq: int


def items(*seqs: int) -> list[Item]:
    return [Item(s) for s in seqs]


def span(lo: int, hi: int) -> list[Item]:
    """Items ``lo..hi`` inclusive."""
    return items(*range(lo, hi + 1))


def pos(head: int, first: int = 1, epoch: str = EPOCH) -> Position:
    return Position(epoch, head, first)


def deliver(*seqs: int) -> Deliver[Item]:
    return Deliver(tuple(items(*seqs)))


def delivered(actions: list[object]) -> list[int]:
    """The seqs of every ``Deliver`` in ``actions``, concatenated."""
    return [item.seq for a in actions if isinstance(a, Deliver) for item in a.items]


def started(cursor: int = 0, epoch: str | None = EPOCH, **kwargs: int) -> RoomSync[Item]:
    """A machine that has called start() and whose initial Fetch was taken."""
    sync: RoomSync[Item] = RoomSync(cursor, epoch, **kwargs)
    sync.start()
    assert sync.take_actions() == [Fetch(after=cursor, limit=sync.page_limit)]
    return sync


def live_at(cursor: int, epoch: str | None = EPOCH, **kwargs: int) -> RoomSync[Item]:
    return RoomSync[Item].resumed(cursor, epoch, **kwargs)


def assert_dead(sync: RoomSync[Item]) -> None:
    """After a Resync (or close) nothing more comes out of the machine, whatever it is fed."""
    assert sync.live(Item(sync.last + 1)) is False
    sync.page(span(sync.last + 1, sync.last + 3), pos(sync.last + 3))
    sync.dropped(1)
    sync.head_seen(pos(sync.last + 10))
    sync.fetch_failed()
    assert sync.take_actions() == []


# ---- start ----------------------------------------------------------------------------------


def test_start_queues_fetch_after_cursor() -> None:
    """start() moves to CATCHING_UP and asks for the store after the cursor, one page at a time."""
    sync: RoomSync[Item] = RoomSync(7, EPOCH, page_limit=25)
    assert sync.state is State.IDLE
    sync.start()
    assert sync.state is State.CATCHING_UP
    assert sync.take_actions() == [Fetch(after=7, limit=25)]
    assert sync.take_actions() == []


def test_accepted_once_on_first_good_page_before_deliver() -> None:
    """The first good page yields Accepted (with its position) before any Deliver; later pages do not."""
    sync = started(0, page_limit=2)
    sync.page(span(1, 2), pos(3))
    assert sync.take_actions() == [Accepted(pos(3)), deliver(1, 2), Fetch(after=2, limit=2)]
    sync.page(items(3), pos(3))
    assert sync.take_actions() == [deliver(3), CaughtUp(3)]


def test_empty_room_catches_up_without_deliver() -> None:
    """Rule 4: an empty page at the head is Accepted and caught up, with nothing to deliver."""
    sync = started(0)
    sync.page([], pos(0))
    assert sync.take_actions() == [Accepted(pos(0)), CaughtUp(0)]
    assert sync.state is State.LIVE


def test_cursor_at_head_catches_up_with_empty_page() -> None:
    """Rule 4: a cursor already at the head needs one empty page and no Deliver."""
    sync = started(5)
    sync.page([], pos(5))
    assert sync.take_actions() == [Accepted(pos(5)), CaughtUp(5)]
    assert sync.last == 5


def test_none_epoch_adopts_the_first_page_epoch() -> None:
    """A cursor without an epoch takes the room's epoch from the first page and holds later ones to it."""
    sync = started(0, epoch=None)
    sync.page(span(1, 2), pos(2, epoch="e9"))
    assert sync.take_actions() == [Accepted(pos(2, epoch="e9")), deliver(1, 2), CaughtUp(2)]
    assert sync.epoch == "e9"
    sync.head_seen(pos(4, epoch="e10"))
    [action] = sync.take_actions()
    assert isinstance(action, Resync)


# ---- rule 1: duplicates ---------------------------------------------------------------------


def test_rule1_live_duplicates_are_dropped_in_live() -> None:
    """Rule 1: in LIVE a seq <= last is dropped: not delivered, nothing queued, cursor unchanged."""
    sync = live_at(5)
    assert sync.live(Item(5)) is False
    assert sync.live(Item(1)) is False
    assert sync.take_actions() == []
    assert sync.last == 5
    assert sync.state is State.LIVE


def test_rule1_duplicates_during_catch_up_are_not_buffered() -> None:
    """Rule 1: while catching up, a live seq <= last is dropped, not buffered."""
    sync = started(5)
    sync.live(Item(3))
    sync.live(Item(5))
    assert sync.buffered == 0
    sync.live(Item(6))
    assert sync.buffered == 1


def test_rule1_buffered_duplicate_of_page_is_delivered_once() -> None:
    """Rule 1: a buffered live message that the page also holds comes out once."""
    sync = started(0)
    sync.live(Item(2))
    sync.live(Item(3))
    sync.page(span(1, 3), pos(3))
    actions = sync.take_actions()
    assert delivered(actions) == [1, 2, 3]
    assert actions[-1] == CaughtUp(3)
    assert sync.buffered == 0


def test_rule1_live_repeat_after_catch_up_is_dropped() -> None:
    """Rule 1: a message already delivered from a page is dropped when it later arrives live."""
    sync = started(0)
    sync.page(span(1, 4), pos(4))
    sync.take_actions()
    assert sync.live(Item(4)) is False
    assert sync.live(Item(5)) is True


# ---- rule 2: the hot path -------------------------------------------------------------------


def test_rule2_next_seq_passes_straight_through() -> None:
    """Rule 2: in LIVE, seq == last + 1 returns True, advances the cursor and queues nothing."""
    sync = live_at(5)
    assert sync.live(Item(6)) is True
    assert sync.live(Item(7)) is True
    assert sync.take_actions() == []
    assert sync.last == 7
    assert sync.state is State.LIVE
    assert sync.buffered == 0


def test_rule2_live_is_not_passed_through_while_catching_up() -> None:
    """Rule 2 holds only in LIVE: during catch-up even last + 1 is buffered, for the page merge."""
    sync = started(0)
    assert sync.live(Item(1)) is False
    assert sync.buffered == 1
    assert sync.take_actions() == []


# ---- rule 3: gaps in LIVE -------------------------------------------------------------------


def test_rule3_gap_buffers_and_fetches() -> None:
    """Rule 3: in LIVE, seq > last + 1 is buffered, the state becomes FILLING and Fetch(after=last) is queued."""
    sync = live_at(5, page_limit=100)
    assert sync.live(Item(8)) is False
    assert sync.state is State.FILLING
    assert sync.buffered == 1
    assert sync.take_actions() == [Fetch(after=5, limit=100)]


def test_rule3_further_live_messages_while_filling_queue_no_more_fetches() -> None:
    """Rule 3: while FILLING, more live messages (gapped or not) are only buffered: one Fetch in flight."""
    sync = live_at(5)
    sync.live(Item(8))
    sync.take_actions()
    assert sync.live(Item(6)) is False
    assert sync.live(Item(9)) is False
    assert sync.take_actions() == []
    assert sync.buffered == 3


def test_rule3_gap_is_filled_from_the_store() -> None:
    """Rule 3 + 4: the page fills the gap, the buffer follows, then CaughtUp and back to LIVE."""
    sync = live_at(5)
    sync.live(Item(8))
    sync.live(Item(9))
    sync.take_actions()
    sync.page(span(6, 8), pos(8))
    assert sync.take_actions() == [deliver(6, 7, 8, 9), CaughtUp(9)]
    assert sync.state is State.LIVE
    assert sync.live(Item(10)) is True


def test_rule3_no_accepted_for_a_resumed_machine() -> None:
    """A resumed machine was accepted by the server already: filling a gap emits no Accepted."""
    sync = live_at(2)
    sync.live(Item(4))
    sync.take_actions()
    sync.page(span(3, 4), pos(4))
    assert not any(isinstance(a, Accepted) for a in sync.take_actions())


# ---- rule 4: merge, paging, caught up -------------------------------------------------------


def test_rule4_live_during_catch_up_is_merged_after_the_page() -> None:
    """Rule 4: live messages buffered during catch-up follow the page's contiguous run in one Deliver."""
    sync = started(0)
    sync.live(Item(4))
    sync.live(Item(5))
    sync.page(span(1, 3), pos(3))
    assert sync.take_actions() == [Accepted(pos(3)), deliver(1, 2, 3, 4, 5), CaughtUp(5)]
    assert sync.state is State.LIVE
    assert sync.buffered == 0


def test_rule4_merge_deduplicates_overlap_and_out_of_order_buffer() -> None:
    """Rule 4 + 1: buffer and page overlap, buffer arrived out of order: each seq once, ascending."""
    sync = started(0)
    for seq in (5, 3, 4, 3, 6):
        sync.live(Item(seq))
    sync.page(span(1, 4), pos(4))
    actions = sync.take_actions()
    assert delivered(actions) == [1, 2, 3, 4, 5, 6]
    assert actions[-1] == CaughtUp(6)


def test_rule4_pages_until_the_head() -> None:
    """Rule 4: while the head is beyond last, the next page is fetched after the new last."""
    sync = started(0, page_limit=2)
    sync.page(span(1, 2), pos(5))
    assert sync.take_actions() == [Accepted(pos(5)), deliver(1, 2), Fetch(after=2, limit=2)]
    assert sync.state is State.CATCHING_UP
    sync.page(span(3, 4), pos(5))
    assert sync.take_actions() == [deliver(3, 4), Fetch(after=4, limit=2)]
    sync.page(items(5), pos(5))
    assert sync.take_actions() == [deliver(5), CaughtUp(5)]
    assert sync.state is State.LIVE


def test_rule4_fetches_up_to_a_buffered_seq_beyond_the_head() -> None:
    """Rule 4: a buffered seq beyond last (not contiguous) makes it fetch again even when the page is at head."""
    sync = started(0)
    sync.live(Item(7))  # committed after the page's snapshot; 5 and 6 never arrived live
    sync.page(span(1, 4), pos(4))
    assert sync.take_actions() == [Accepted(pos(4)), deliver(1, 2, 3, 4), Fetch(after=4, limit=500)]
    sync.page(span(5, 7), pos(7))
    assert sync.take_actions() == [deliver(5, 6, 7), CaughtUp(7)]


def test_rule4_page_overlapping_the_cursor_is_trimmed() -> None:
    """Rule 4 + 1: page messages at or below last are skipped; the contiguous run from last + 1 is delivered."""
    sync = started(3)
    sync.page(span(2, 5), pos(5))
    actions = sync.take_actions()
    assert delivered(actions) == [4, 5]
    assert actions[-1] == CaughtUp(5)


def test_rule4_caught_up_carries_the_last_delivered_seq() -> None:
    """Rule 4: CaughtUp.seq is the cursor after the final Deliver, and equals ``last``."""
    sync = started(10)
    sync.live(Item(13))
    sync.page(span(11, 12), pos(12))
    actions = sync.take_actions()
    assert actions[-1] == CaughtUp(13)
    assert sync.last == 13


# ---- rule 5: resync -------------------------------------------------------------------------


def test_rule5_epoch_mismatch_on_page_is_resync() -> None:
    """Rule 5: a page from another epoch is a Resync, with no Accepted and no Deliver."""
    sync = started(3)
    other = pos(10, epoch="e2")
    sync.page(span(4, 10), other)
    actions = sync.take_actions()
    assert len(actions) == 1
    [resync] = actions
    assert isinstance(resync, Resync)
    assert resync.code is Code.RESYNC_REQUIRED
    assert resync.position == other
    assert sync.state is State.RESYNC
    assert sync.last == 3
    assert_dead(sync)


def test_rule5_history_trimmed_past_cursor_is_resync() -> None:
    """Rule 5: position.first > last + 1 means messages after the cursor are gone: Resync, nothing delivered."""
    sync = started(3)
    sync.live(Item(9))
    trimmed = pos(10, first=6)
    sync.page(span(6, 10), trimmed)
    actions = sync.take_actions()
    assert len(actions) == 1
    assert isinstance(actions[0], Resync)
    assert actions[0].code is Code.RESYNC_REQUIRED
    assert actions[0].position == trimmed
    assert sync.buffered == 0
    assert sync.last == 3
    assert_dead(sync)


def test_rule5_trimmed_exactly_to_the_cursor_is_fine() -> None:
    """Rule 5 boundary: first == last + 1 still continues the cursor: no Resync."""
    sync = started(5)
    sync.page(span(6, 7), pos(7, first=6))
    actions = sync.take_actions()
    assert delivered(actions) == [6, 7]
    assert not any(isinstance(a, Resync) for a in actions)


def test_rule5_trim_discovered_while_filling_is_resync() -> None:
    """Rule 5: a trim can also be found when repairing a live gap; nothing is delivered after the Resync."""
    sync = live_at(5)
    sync.live(Item(9))
    sync.take_actions()
    sync.page(span(8, 9), pos(9, first=8))
    [resync] = sync.take_actions()
    assert isinstance(resync, Resync)
    assert sync.state is State.RESYNC
    assert_dead(sync)


def test_rule5_page_with_a_hole_is_resync() -> None:
    """Rule 5: a page breaking the store's contract (a hole) is a Resync, not a partial delivery.

    The part before the hole is not delivered either, and ``last`` stays the newest seq delivered.
    """
    sync = started(0)
    sync.page(items(1, 2, 4, 5), pos(5))
    actions = sync.take_actions()
    assert len(actions) == 1
    assert isinstance(actions[0], Resync)
    assert actions[0].code is Code.RESYNC_REQUIRED
    assert sync.state is State.RESYNC
    assert sync.last == 0
    assert_dead(sync)


def test_rule5_page_with_a_hole_while_filling_keeps_the_cursor() -> None:
    """Rule 5: after a hole Resync the cursor still names the last delivered message, not undelivered ones."""
    sync = live_at(3)
    sync.live(Item(7))
    sync.take_actions()
    sync.page(items(4, 6, 7), pos(7))
    [resync] = sync.take_actions()
    assert isinstance(resync, Resync)
    assert sync.last == 3


def test_rule5_empty_page_below_head_is_resync() -> None:
    """Rule 5: an empty page while the head is beyond last breaks the store's contract: Resync."""
    sync = started(2)
    sync.page([], pos(5))
    actions = sync.take_actions()
    assert len(actions) == 1
    assert isinstance(actions[0], Resync)
    assert actions[0].position == pos(5)
    assert sync.state is State.RESYNC
    assert_dead(sync)


def test_rule5_nothing_is_delivered_after_resync() -> None:
    """Rule 5: once a Resync is queued, later live messages, pages and fetch failures produce nothing."""
    sync = started(0, page_limit=2)
    sync.page(span(1, 2), pos(6))
    assert delivered(sync.take_actions()) == [1, 2]
    sync.page(span(5, 6), pos(6, first=5))
    [resync] = sync.take_actions()
    assert isinstance(resync, Resync)
    assert_dead(sync)
    sync.close()
    assert sync.state is State.CLOSED


# ---- rule 6: bounded buffer -----------------------------------------------------------------


def test_rule6_overflow_drops_the_buffer_but_no_message() -> None:
    """Rule 6: overflowing max_buffer empties the buffer; more fetches still deliver every message once."""
    sync = started(0, max_buffer=2)
    for seq in (4, 5, 6):
        sync.live(Item(seq))
    assert sync.buffer_overflows == 1
    assert sync.buffered <= 2
    sync.live(Item(7))
    sync.page(span(1, 3), pos(3))
    actions = sync.take_actions()
    seen = delivered(actions)
    assert actions[-1] == Fetch(after=seen[-1], limit=500)
    sync.page(span(seen[-1] + 1, 7), pos(7))
    actions = sync.take_actions()
    seen += delivered(actions)
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert actions[-1] == CaughtUp(7)


def test_rule6_overflow_with_tiny_pages_and_buffer() -> None:
    """Rule 6: with max_buffer=1 and page_limit=1, a burst of live messages costs reads, never messages."""
    sync = started(0, page_limit=1, max_buffer=1)
    for seq in range(1, 11):
        sync.live(Item(seq))
    assert sync.buffer_overflows > 0
    out: list[int] = []
    fetch = Fetch(after=0, limit=1)  # the one start() queued
    for _ in range(50):
        sync.page(span(fetch.after + 1, min(fetch.after + fetch.limit, 10)), pos(10))
        actions = sync.take_actions()
        out += delivered(actions)
        fetches = [a for a in actions if isinstance(a, Fetch)]
        if not fetches:
            break
        [fetch] = fetches
    assert out == list(range(1, 11))
    assert sync.state is State.LIVE
    assert sync.last == 10


def test_rule6_gap_in_live_with_overflow() -> None:
    """Rule 6: a live gap whose buffer overflows while FILLING still ends with every message once."""
    sync = live_at(0, max_buffer=2)
    sync.live(Item(3))
    assert sync.take_actions() == [Fetch(after=0, limit=500)]
    for seq in (4, 5, 6):
        sync.live(Item(seq))
    sync.page(span(1, 4), pos(4))
    actions = sync.take_actions()
    out = delivered(actions)
    if not isinstance(actions[-1], CaughtUp):
        assert actions[-1] == Fetch(after=out[-1], limit=500)
        sync.page(span(out[-1] + 1, 6), pos(6))
        actions = sync.take_actions()
        out += delivered(actions)
    assert out == [1, 2, 3, 4, 5, 6]
    assert actions[-1] == CaughtUp(6)


# ---- dropped(), head_seen(), fetch_failed() -------------------------------------------------


def test_dropped_in_live_starts_filling() -> None:
    """dropped() in LIVE is a gap of unknown position: FILLING and Fetch(after=last)."""
    sync = live_at(4)
    sync.dropped(2)
    assert sync.state is State.FILLING
    assert sync.take_actions() == [Fetch(after=4, limit=500)]
    sync.page(span(5, 6), pos(6))
    assert sync.take_actions() == [deliver(5, 6), CaughtUp(6)]


def test_dropped_in_live_with_nothing_missing_is_harmless() -> None:
    """dropped() when the store shows nothing new: an empty page at the head goes back to LIVE, no Resync."""
    sync = live_at(4)
    sync.dropped(1)
    sync.take_actions()
    sync.page([], pos(4))
    assert sync.take_actions() == [CaughtUp(4)]
    assert sync.state is State.LIVE


def test_dropped_zero_is_a_no_op() -> None:
    """dropped(0) (or negative) loses nothing and changes nothing."""
    sync = live_at(4)
    sync.dropped(0)
    sync.dropped(-3)
    assert sync.state is State.LIVE
    assert sync.take_actions() == []


def test_dropped_during_catch_up_forces_one_more_fetch() -> None:
    """dropped() while catching up: the page in flight may predate the lost message, so fetch once more."""
    sync = started(0)
    sync.dropped(1)
    sync.page(span(1, 2), pos(2))
    assert sync.take_actions() == [Accepted(pos(2)), deliver(1, 2), Fetch(after=2, limit=500)]
    sync.page(items(3), pos(3))
    assert sync.take_actions() == [deliver(3), CaughtUp(3)]


def test_dropped_during_catch_up_rechecks_only_once() -> None:
    """The recheck is consumed by the next page: a later page at the head catches up."""
    sync = started(0)
    sync.dropped(1)
    sync.page(span(1, 2), pos(2))
    sync.take_actions()
    sync.page([], pos(2))
    assert sync.take_actions() == [CaughtUp(2)]


def test_dropped_while_filling_forces_one_more_fetch() -> None:
    """dropped() while FILLING also rechecks the store before going LIVE."""
    sync = live_at(2)
    sync.live(Item(4))
    sync.take_actions()
    sync.dropped(1)
    assert sync.take_actions() == []
    sync.page(span(3, 4), pos(4))
    assert sync.take_actions() == [deliver(3, 4), Fetch(after=4, limit=500)]
    sync.page(items(5), pos(5))
    assert sync.take_actions() == [deliver(5), CaughtUp(5)]


def test_head_seen_beyond_last_fetches_the_lost_tail() -> None:
    """head_seen() in LIVE with head > last: a lost tail no later message reveals is fetched and delivered."""
    sync = live_at(3)
    sync.head_seen(pos(5))
    assert sync.state is State.FILLING
    assert sync.take_actions() == [Fetch(after=3, limit=500)]
    sync.page(span(4, 5), pos(5))
    assert sync.take_actions() == [deliver(4, 5), CaughtUp(5)]
    assert sync.state is State.LIVE


def test_head_seen_at_last_is_a_no_op() -> None:
    """head_seen() with head == last (or behind it) means nothing is missing."""
    sync = live_at(3)
    sync.head_seen(pos(3))
    sync.head_seen(pos(2))
    assert sync.take_actions() == []
    assert sync.state is State.LIVE


def test_head_seen_with_another_epoch_is_resync() -> None:
    """Rule 5 via head_seen(): the room was recreated under another epoch: Resync."""
    sync = live_at(3)
    other = pos(1, epoch="e2")
    sync.head_seen(other)
    [resync] = sync.take_actions()
    assert isinstance(resync, Resync)
    assert resync.code is Code.RESYNC_REQUIRED
    assert resync.position == other
    assert sync.state is State.RESYNC
    assert_dead(sync)


def test_head_seen_is_ignored_outside_live() -> None:
    """head_seen() while a Fetch is in flight changes nothing: the page will tell the head."""
    sync = started(0)
    sync.head_seen(pos(9))
    sync.head_seen(pos(9, epoch="e2"))
    assert sync.take_actions() == []
    assert sync.state is State.CATCHING_UP


def test_fetch_failed_requeues_the_same_fetch() -> None:
    """fetch_failed() queues the same Fetch again (the caller backs off)."""
    sync = started(4, page_limit=3)
    sync.fetch_failed()
    assert sync.take_actions() == [Fetch(after=4, limit=3)]
    sync.page(span(5, 7), pos(9))
    assert sync.take_actions()[-1] == Fetch(after=7, limit=3)
    sync.fetch_failed()
    assert sync.take_actions() == [Fetch(after=7, limit=3)]


def test_fetch_failed_in_live_is_a_no_op() -> None:
    """fetch_failed() without a Fetch outstanding queues nothing."""
    sync = live_at(4)
    sync.fetch_failed()
    assert sync.take_actions() == []


# ---- close, resumed, usage errors -----------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: RoomSync[Item](0), lambda: started(2), lambda: live_at(2)])
def test_close_makes_later_inputs_no_ops(make: object) -> None:
    """close() from any state: later live/page/dropped/head_seen/fetch_failed/close do nothing."""
    sync = make()  # type: ignore[operator]
    sync.live(Item(sync.last + 2))
    sync.close()
    assert sync.state is State.CLOSED
    assert sync.buffered == 0
    sync.take_actions()
    assert_dead(sync)
    sync.close()
    assert sync.state is State.CLOSED
    assert sync.take_actions() == []


def test_close_after_resync() -> None:
    """RESYNC -> CLOSED is allowed (the caller closes the machine after acting on the Resync)."""
    sync = live_at(1)
    sync.head_seen(pos(1, epoch="e2"))
    sync.close()
    assert sync.state is State.CLOSED


def test_resumed_starts_live() -> None:
    """RoomSync.resumed() is LIVE at the cursor without start() or Accepted, and keeps its options."""
    sync = RoomSync[Item].resumed(9, EPOCH, page_limit=7, max_buffer=3)
    assert sync.state is State.LIVE
    assert sync.last == 9
    assert sync.epoch == EPOCH
    assert (sync.page_limit, sync.max_buffer) == (7, 3)
    assert sync.take_actions() == []
    assert sync.live(Item(10)) is True


@pytest.mark.parametrize("make", [lambda: RoomSync[Item](0), lambda: live_at(0)])
def test_page_without_a_fetch_is_usage_error(make: object) -> None:
    """page() in IDLE or LIVE answers a Fetch that was never queued: a bug in the caller."""
    sync = make()  # type: ignore[operator]
    with pytest.raises(UsageError):
        sync.page(items(1), pos(1))


def test_start_twice_is_usage_error() -> None:
    """start() is allowed once, from IDLE only."""
    sync = started(0)
    with pytest.raises(UsageError):
        sync.start()


@pytest.mark.parametrize("make", [lambda: live_at(0), lambda: RoomSync[Item](0)])
def test_start_when_live_or_closed_is_usage_error(make: object) -> None:
    """start() on a resumed (LIVE) or closed machine is a usage error."""
    sync = make()  # type: ignore[operator]
    if sync.state is State.IDLE:
        sync.close()
    with pytest.raises(UsageError):
        sync.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cursor": -1},
        {"cursor": 0, "page_limit": 0},
        {"cursor": 0, "max_buffer": 0},
    ],
)
def test_bad_construction_is_usage_error(kwargs: dict[str, int]) -> None:
    """A negative cursor, page_limit < 1 or max_buffer < 1 is refused."""
    with pytest.raises(UsageError):
        RoomSync[Item](**kwargs)


@pytest.mark.parametrize(
    ("make", "target"),
    [
        (lambda: live_at(0), State.CATCHING_UP),
        (lambda: live_at(0), State.IDLE),
        (lambda: started(0), State.FILLING),
        (lambda: RoomSync[Item](0), State.LIVE),
    ],
)
def test_invalid_transition_is_usage_error(make: object, target: State) -> None:
    """Only transitions in the table are allowed; anything else is a UsageError, not a silent change."""
    sync = make()  # type: ignore[operator]
    before = sync.state
    with pytest.raises(UsageError):
        sync._to(target)
    assert sync.state is before


def test_resync_and_closed_are_terminal() -> None:
    """RESYNC only leads to CLOSED, and CLOSED leads nowhere."""
    sync = live_at(0)
    sync.head_seen(pos(0, epoch="e2"))
    for target in (State.LIVE, State.FILLING, State.CATCHING_UP, State.IDLE):
        with pytest.raises(UsageError):
            sync._to(target)
    sync.close()
    for target in (State.LIVE, State.RESYNC, State.IDLE):
        with pytest.raises(UsageError):
            sync._to(target)
