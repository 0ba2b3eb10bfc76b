"""Property tests for RoomSync: random interleavings of live traffic, store reads, drops and head checks.

The harness models the real system: a store (a list, seq = index + 1) that may grow, be trimmed or be
recreated under a new epoch; a live stream that carries every appended message after it is stored, and
that may duplicate, drop (signalled or silently) and reorder; and the caller executing each ``Fetch``
as a read (a snapshot) followed later by ``page()``, or failing it.

Invariant: every message after the cursor up to the final head is delivered exactly once and in
order (live pass-through and ``Deliver`` together), or a ``Resync`` was emitted and nothing was
delivered after it. Without trimming or a new epoch, a Resync is never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.protocol.sync import Accepted, CaughtUp, Deliver, Fetch, Resync, RoomSync, State
from roost.protocol.types import Position

Scenario = Literal["plain", "trim", "epoch"]


@dataclass(frozen=True)
class Item:
    seq: int
    gen: int = 0
    """Which incarnation of the room's history the message belongs to (one per epoch)."""


@dataclass
class World:
    """The store and the live stream around one machine."""

    store: list[Item]
    gen: int = 0
    first: int = 1
    in_flight: list[Item] = field(default_factory=list)
    """Published live but not yet handed to the machine (the network, in any order)."""
    published: list[Item] = field(default_factory=list)

    @property
    def epoch(self) -> str:
        return f"e{self.gen}"

    def position(self) -> Position:
        return Position(self.epoch, len(self.store), self.first)

    def read(self, after: int, limit: int) -> list[Item]:
        """The store's contract: ascending, hole-free messages with seq > after, from the oldest kept."""
        start = max(after, self.first - 1)
        return self.store[start : start + limit]

    def append(self) -> None:
        """Store a message, then publish it live (only the subscribed, original incarnation is live)."""
        item = Item(len(self.store) + 1, self.gen)
        self.store.append(item)
        if self.gen == 0:
            self.in_flight.append(item)
            self.published.append(item)


@dataclass
class Run:
    """Everything the machine said, plus the caller's view of its one outstanding Fetch."""

    machine: RoomSync[Item]
    world: World
    cursor: int
    delivered: list[Item] = field(default_factory=list)
    resyncs: list[Resync] = field(default_factory=list)
    after_resync: list[Item] = field(default_factory=list)
    accepted: int = 0
    queued: Fetch | None = None
    snapshot: tuple[list[Item], Position] | None = None

    def emit(self, items: tuple[Item, ...] | list[Item]) -> None:
        if self.resyncs:
            self.after_resync.extend(items)
        self.delivered.extend(items)

    def collect(self) -> None:
        """Drain the machine's actions, checking what can be checked at once."""
        for action in self.machine.take_actions():
            if isinstance(action, Fetch):
                # One Fetch at a time: the server and the client both rely on it.
                assert self.queued is None and self.snapshot is None, "a second Fetch while one is outstanding"
                assert action.after == self.machine.last or self.resyncs
                self.queued = action
            elif isinstance(action, Deliver):
                assert action.items, "empty Deliver"
                assert not self.delivered or self.accepted or self.cursor < action.items[0].seq
                self.emit(action.items)
            elif isinstance(action, Accepted):
                assert not self.delivered, "Accepted after a Deliver"
                self.accepted += 1
            elif isinstance(action, CaughtUp):
                assert action.seq == (self.delivered[-1].seq if self.delivered else self.cursor)
            elif isinstance(action, Resync):
                self.resyncs.append(action)
            else:  # pragma: no cover
                raise AssertionError(f"unknown action {action!r}")

    # ---- the caller's moves ------------------------------------------------------------------

    def live(self, item: Item) -> None:
        if self.machine.live(item):
            self.emit([item])
        self.collect()

    def read(self) -> None:
        """Execute the queued Fetch against the store now; the page reaches the machine later."""
        if self.queued is not None:
            fetch, self.queued = self.queued, None
            self.snapshot = (self.world.read(fetch.after, fetch.limit), self.world.position())

    def answer(self) -> None:
        """Feed the last read to page() (reading first if only queued)."""
        self.read()
        if self.snapshot is not None:
            messages, position = self.snapshot
            self.snapshot = None
            self.machine.page(messages, position)
            self.collect()

    def fail(self) -> None:
        if self.queued is not None or self.snapshot is not None:
            self.queued = self.snapshot = None
            self.machine.fetch_failed()
            self.collect()

    def head_seen(self) -> None:
        self.machine.head_seen(self.world.position())
        self.collect()

    def dropped(self, count: int) -> None:
        self.machine.dropped(count)
        self.collect()

    def settle(self) -> None:
        """Execute every outstanding Fetch until none is left."""
        for _ in range(10_000):
            if self.queued is None and self.snapshot is None:
                return
            self.answer()
        raise AssertionError("fetching never ends")


# ---- the schedule -------------------------------------------------------------------------------

Op = tuple[str, int]

# Repeats weight the choice: mostly traffic and reads, now and then a failure, a drop or a head check.
PLAIN_OPS = [
    *["append"] * 3,
    *["live"] * 3,
    *["burst"] * 2,
    "dup",
    "drop",
    "drop_silent",
    *["read"] * 2,
    *["answer"] * 2,
    "fail",
    "head",
]


def ops(scenario: Scenario, *, silent_drops: bool = True) -> st.SearchStrategy[list[Op]]:
    names = [name for name in PLAIN_OPS if silent_drops or name != "drop_silent"]
    if scenario == "trim":
        names.append("trim")
    if scenario == "epoch":
        names.append("epoch")
    return st.lists(st.tuples(st.sampled_from(names), st.integers(0, 20)), min_size=1, max_size=60)


def drive(run: Run, schedule: list[Op], *, head_check: bool = True) -> None:
    """Play ``schedule`` against the machine and the world, then settle and check the head once more.

    With ``head_check=False`` the wire is flushed in order instead and no final ``head_seen()`` is
    made: without silent losses, live traffic, ``dropped()`` and the fetches must suffice on their own.
    """
    world = run.world
    for name, arg in schedule:
        if name == "append":
            for _ in range(1 + arg % 3):
                world.append()
        elif name == "live" and world.in_flight:
            # Mostly in order, sometimes reordered.
            index = 0 if arg < 12 else arg % len(world.in_flight)
            run.live(world.in_flight.pop(index))
        elif name == "burst":
            # Several in order at once: fills (and overflows) the buffer while a read is pending.
            for _ in range(min(1 + arg % 6, len(world.in_flight))):
                run.live(world.in_flight.pop(0))
        elif name == "dup" and world.published and world.gen == 0:
            run.live(world.published[arg % len(world.published)])
        elif name == "drop" and world.in_flight:
            world.in_flight.pop(arg % len(world.in_flight))
            run.dropped(1)
        elif name == "drop_silent" and world.in_flight:
            world.in_flight.pop(arg % len(world.in_flight))
        elif name == "read":
            run.read()
        elif name == "answer":
            run.answer()
        elif name == "fail":
            run.fail()
        elif name == "head":
            run.head_seen()
        elif name == "trim":
            world.first = min(len(world.store) + 1, world.first + 1 + arg % 4)
        elif name == "epoch":
            world.gen += 1
            world.store = [Item(seq, world.gen) for seq in range(1, 1 + arg % 8)]
            world.first = 1
            world.in_flight.clear()  # the old incarnation's subscription is gone
    if head_check:
        # Whatever is still on the wire is lost: the final head check has to repair it.
        run.settle()
        run.head_seen()
        run.settle()
        return
    while world.in_flight:
        run.live(world.in_flight.pop(0))
        run.settle()
    run.settle()


def check(run: Run, scenario: Scenario) -> None:
    machine, world = run.machine, run.world
    seqs = [item.seq for item in run.delivered]
    assert len(run.resyncs) <= 1, "more than one Resync"
    if run.resyncs:
        assert scenario != "plain", f"Resync without trim or epoch change: {run.resyncs[0].reason}"
        assert run.after_resync == [], "delivered after Resync"
        assert machine.state is State.RESYNC
        # What came before the Resync is still a gap-free, duplicate-free run from the cursor.
        assert seqs == list(range(run.cursor + 1, run.cursor + 1 + len(seqs)))
        assert all(item.gen == 0 for item in run.delivered)
        assert machine.last == (seqs[-1] if seqs else run.cursor)
        return
    assert world.gen == 0, "the epoch changed but no Resync was emitted"
    assert machine.state is State.LIVE
    assert run.delivered == world.store[run.cursor :], f"delivered {seqs}, head {len(world.store)}"
    assert machine.last == len(world.store)
    assert machine.buffered == 0


@st.composite
def runs(draw: st.DrawFn, scenario: Scenario, *, head_check: bool = True) -> Run:
    size = draw(st.integers(0, 12))
    world = World([Item(seq) for seq in range(1, size + 1)])
    world.published = list(world.store)
    cursor = draw(st.integers(0, size))
    resumed = draw(st.booleans())
    if resumed and not head_check:
        cursor = size  # messages stored before a resumed client was live are found by head checks only
    options = {
        "page_limit": draw(st.sampled_from([1, 2, 3, 5, 500])),
        "max_buffer": draw(st.sampled_from([1, 2, 3, 10_000])),
    }
    if not resumed:
        # A server session: it subscribes live, then starts the catch-up from the client's cursor.
        # A cursor may come without an epoch (it then adopts the first page's); when the test is about
        # a changing epoch, the cursor names one, or a change before the first read is not a change.
        epoch = world.epoch if scenario == "epoch" else draw(st.sampled_from([None, world.epoch]))
        machine: RoomSync[Item] = RoomSync(cursor, epoch, **options)
        run = Run(machine, world, cursor)
        machine.start()
        run.collect()
    else:
        # A client after the server's catch-up: LIVE at its cursor, repairing gaps on its own.
        machine = RoomSync[Item].resumed(cursor, world.epoch, **options)
        run = Run(machine, world, cursor)
        run.accepted = 1
    return run


@settings(max_examples=600, deadline=None)
@given(run=runs("plain"), schedule=ops("plain"))
def test_every_message_once_in_order_without_resync(run: Run, schedule: list[Op]) -> None:
    """Rules 1-4 and 6: duplicates, drops, reordering, overflow and growth never lose, repeat or reorder."""
    drive(run, schedule)
    check(run, "plain")
    assert run.accepted == 1


@settings(max_examples=600, deadline=None)
@given(run=runs("plain", head_check=False), schedule=ops("plain", silent_drops=False))
def test_signalled_losses_are_repaired_without_head_checks(run: Run, schedule: list[Op]) -> None:
    """Rules 3, 4, 6 and dropped(): with no silent loss, every message arrives even without a final head_seen."""
    drive(run, schedule, head_check=False)
    check(run, "plain")


@settings(max_examples=300, deadline=None)
@given(run=runs("trim"), schedule=ops("trim"))
def test_trimming_is_complete_delivery_or_resync(run: Run, schedule: list[Op]) -> None:
    """Rule 5: when history is trimmed, the machine delivers everything or resyncs; never a silent hole."""
    drive(run, schedule)
    check(run, "trim")


@settings(max_examples=300, deadline=None)
@given(run=runs("epoch"), schedule=ops("epoch"))
def test_new_epoch_is_always_noticed(run: Run, schedule: list[Op]) -> None:
    """Rule 5: a recreated history (new epoch) always ends in a Resync, with only old messages before it."""
    drive(run, schedule)
    check(run, "epoch")


def test_harness_sees_a_silently_lost_tail_repaired() -> None:
    """The harness itself: a tail lost on the wire is repaired by the final head check."""
    world = World([Item(seq) for seq in range(1, 4)])
    run = Run(RoomSync[Item].resumed(3, world.epoch), world, 3)
    drive(run, [("append", 2), ("live", 0)])  # 4, 5, 6 stored; 4 arrives; 5 and 6 are lost
    check(run, "plain")
    assert [item.seq for item in run.delivered] == [4, 5, 6]


def test_harness_detects_trim_past_cursor() -> None:
    """The harness itself: trimming past a behind cursor ends in a Resync, not in a hole."""
    world = World([Item(seq) for seq in range(1, 6)])
    machine: RoomSync[Item] = RoomSync(1, world.epoch)
    run = Run(machine, world, 1)
    machine.start()
    run.collect()
    drive(run, [("trim", 2)])
    check(run, "trim")
    assert len(run.resyncs) == 1
    assert run.delivered == []


def started_run(size: int, cursor: int, **options: int) -> Run:
    world = World([Item(seq) for seq in range(1, size + 1)])
    world.published = list(world.store)
    machine: RoomSync[Item] = RoomSync(cursor, world.epoch, **options)
    run = Run(machine, world, cursor)
    machine.start()
    run.collect()
    return run


def test_drive_signalled_drop_between_read_and_page() -> None:
    """dropped() after the read but before page(): the machine reads once more instead of going LIVE short."""
    run = started_run(0, 0)
    drive(run, [("append", 0), ("read", 0), ("drop", 0), ("answer", 0)], head_check=False)
    check(run, "plain")
    assert [item.seq for item in run.delivered] == [1]


def test_drive_overflow_beyond_the_page_head() -> None:
    """Rule 6: live messages newer than the page's snapshot overflow the buffer; they are fetched, not lost."""
    run = started_run(0, 0, max_buffer=1)
    drive(run, [("read", 0), ("append", 2), ("burst", 2), ("answer", 0)], head_check=False)
    check(run, "plain")
    assert run.machine.buffer_overflows == 1
    assert [item.seq for item in run.delivered] == [1, 2, 3]
