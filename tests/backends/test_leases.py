"""The Leases contract (src/roost/ports.py; the rules are in docs/reliability.md, "Leases"), on every store engine
through the port alone.

A durable consumer delivers from one node at a time because the engine says who holds its lease: these
tests check that arbitration where it happens, at the port, with real engines and (where the engine has
several) separate nodes racing. Lease times are short so the expiry cases run in about a second; the
sleeps leave a margin of half a lease for a loaded machine.
"""

from __future__ import annotations

import asyncio

import pytest

from roost.ports import Storage
from roost.protocol.errors import Unavailable

from .conftest import Stores

LONG = 60_000
"""A lease that does not run out during a test (ms)."""
SHORT = 1_000
"""A lease that runs out during a test (ms)."""


async def after(ms: int) -> None:
    await asyncio.sleep(ms / 1000)  # the subject: a lease running out with time


async def test_the_first_lease_is_granted_and_its_holder_renews_it_with_the_same_token(store: Storage) -> None:
    """[R-LEASE-2] A holder that renews keeps its token; [R-LEASE-1] meanwhile another holder is refused."""
    token = await store.lease("job", "a", LONG)
    assert token is not None and token > 0
    assert await store.lease("job", "a", LONG) == token
    assert await store.lease("job", "b", LONG) is None
    assert await store.lease("job", "a", LONG) == token


async def test_a_renewal_runs_for_its_ttl_from_the_renewal(store: Storage) -> None:
    """[R-LEASE-2] A renewal restarts the lease's time: renewed before its end, it outlives its first ttl."""
    token = await store.lease("job", "a", SHORT)
    await after(SHORT * 6 // 10)
    assert await store.lease("job", "a", SHORT) == token
    await after(SHORT * 6 // 10)  # past the first ttl, within the renewed one
    assert await store.lease("job", "b", SHORT) is None
    assert await store.lease("job", "a", SHORT) == token


async def test_a_lease_not_renewed_expires_and_the_next_holder_gets_a_greater_token(store: Storage) -> None:
    """[R-LEASE-2] A lease not renewed ends after its ttl; [R-LEASE-3] the next holder's token is greater, and
    the former holder is now refused like anyone else."""
    first = await store.lease("job", "a", SHORT)
    assert first is not None
    assert await store.lease("job", "b", SHORT) is None
    await after(SHORT * 3 // 2)
    second = await store.lease("job", "b", LONG)
    assert second is not None and second > first
    assert await store.lease("job", "a", LONG) is None
    assert await store.lease("job", "b", LONG) == second


async def test_release_hands_the_lease_on_at_once_with_a_greater_token(store: Storage) -> None:
    """[R-LEASE-4] A released lease is free at once, whatever its ttl; [R-LEASE-3] each new holder's token is
    greater than the one before, the first holder's too when it takes the name back."""
    first = await store.lease("job", "a", LONG)
    await store.release("job", "a")
    second = await store.lease("job", "b", LONG)
    assert first is not None and second is not None and second > first
    await store.release("job", "b")
    third = await store.lease("job", "a", LONG)
    assert third is not None and third > second


async def test_releasing_a_lease_one_does_not_hold_changes_nothing(store: Storage) -> None:
    """[R-LEASE-4] Release by a holder that does not hold the name (or of a name never taken) is a no-op."""
    await store.release("never-taken", "a")
    token = await store.lease("job", "a", LONG)
    await store.release("job", "b")
    assert await store.lease("job", "b", LONG) is None
    assert await store.lease("job", "a", LONG) == token
    await store.release("job", "a")
    await store.release("job", "a")  # twice: the second finds it free
    assert await store.lease("job", "b", LONG) is not None


async def test_names_are_independent(store: Storage) -> None:
    """[R-LEASE-4] Holding, renewing or releasing one name does nothing to another."""
    one = await store.lease("one", "a", LONG)
    two = await store.lease("two", "b", LONG)
    assert one is not None and two is not None
    assert await store.lease("one", "b", LONG) is None
    assert await store.lease("two", "a", LONG) is None
    await store.release("one", "a")
    assert await store.lease("two", "a", LONG) is None
    assert await store.lease("two", "b", LONG) == two


async def test_concurrent_claims_grant_the_lease_to_exactly_one_holder(stores: Stores) -> None:
    """[R-LEASE-1] Holders racing for a free name, from several nodes where the engine has several: the engine
    grants it to exactly one. Several rounds, since a race lost by chance once proves little."""
    nodes = [await stores.open() for _ in range(3 if stores.engine.shared else 1)]
    for round_ in range(5):
        name = f"race-{round_}"
        tokens = await asyncio.gather(*(nodes[i % len(nodes)].lease(name, f"holder-{i}", LONG) for i in range(9)))
        granted = [(i, t) for i, t in enumerate(tokens) if t is not None]
        assert len(granted) == 1, f"round {round_}: {tokens}"
        winner, token = granted[0]
        for node in nodes:  # every node sees the same holder
            assert await node.lease(name, f"holder-{winner}", LONG) == token
            assert await node.lease(name, "someone-else", LONG) is None


async def test_a_lease_is_kept_by_the_engine_not_by_the_node(stores: Stores) -> None:
    """[R-LEASE-1] The lease outlives the node that took it (a restart, or another node): the engine decides."""
    first = await stores.open()
    token = await first.lease("job", "a", LONG)
    again = await stores.restart(first)
    assert await again.lease("job", "b", LONG) is None
    assert await again.lease("job", "a", LONG) == token


async def test_a_closed_store_refuses_leases(stores: Stores) -> None:
    """[R-LEASE-5] After ``aclose``, ``lease`` and ``release`` raise ``Unavailable`` like every other call."""
    store = await stores.open()
    await store.lease("job", "a", LONG)
    await stores.close(store)
    with pytest.raises(Unavailable):
        await store.lease("job", "a", LONG)
    with pytest.raises(Unavailable):
        await store.release("job", "a")
