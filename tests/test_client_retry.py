"""The SDK's wait before resending a refused send: the server's retry_after_s is a floor, and without one
(4500, 4503) the wait doubles from 0.25 s to 5 s with jitter instead of a fixed 0.5 s."""

from __future__ import annotations

import random

from roost.client.backoff import retry_delay


def test_4503_waits_double_up_to_a_cap_with_jitter() -> None:
    """[R-CLIENT-1] Without ``retry_after_s`` a refused send waits 0.25 s doubling to 5 s, drawn from [d/2, d]."""
    rng = random.Random(7)
    for failures, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 5.0), (20, 5.0)]:
        delays = [retry_delay(None, failures, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not in step


def test_retry_after_s_is_a_floor() -> None:
    """[R-CLIENT-1] The server's ``retry_after_s`` is a floor for the wait before resending."""
    rng = random.Random(1)
    assert retry_delay(3.0, 1, rng) == 3.0
    assert 0.125 <= retry_delay(0.001, 1, rng) <= 0.25


def test_a_minute_of_refusals_costs_a_few_resends_not_120() -> None:
    rng = random.Random(3)
    t, sends = 0.0, 0
    while t < 60.0:
        sends += 1
        t += retry_delay(None, sends, rng)
    assert sends < 25


def test_reconnect_delays_double_from_the_sdk_defaults_with_jitter_in_the_upper_half() -> None:
    """[R-CLIENT-4] Reconnect delays: 0.1 s doubling to 5 s (the Client's defaults), each drawn uniformly
    from [d/2, d]."""
    import inspect
    from itertools import islice

    from roost.client import Client
    from roost.client.backoff import backoff

    defaults = inspect.signature(Client).parameters
    initial, cap = defaults["initial_backoff_s"].default, defaults["max_backoff_s"].default
    assert (initial, cap) == (0.1, 5.0)
    runs = [list(islice(backoff(initial, 2.0, cap, random.Random(seed)), 10)) for seed in range(100)]
    for n in range(10):
        d = min(cap, initial * 2**n)
        column = [run[n] for run in runs]
        assert all(d / 2 <= x <= d for x in column), (n, min(column), max(column))
        assert max(column) - min(column) > d / 4  # jittered, not in step
