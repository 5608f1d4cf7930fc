"""The batching policy as a pure function, with a fake queue and a fake clock."""

from __future__ import annotations

import queue

import pytest

from service.batching import collect_batch


class FakeQueue:
    """Items arrive at given (fake) times; ``get`` advances the clock while it waits."""

    def __init__(self, arrivals: list[tuple[float, str]]) -> None:
        self.arrivals = sorted(arrivals, key=lambda a: a[0])
        self.now = 0.0
        self.timeouts: list[float | None] = []

    def clock(self) -> float:
        return self.now

    def get(self, timeout: float | None) -> str:
        self.timeouts.append(timeout)
        if self.arrivals and (timeout is None or self.arrivals[0][0] <= self.now + timeout):
            t, item = self.arrivals.pop(0)
            self.now = max(self.now, t)
            return item
        self.now += timeout or 0.0
        raise queue.Empty


def test_fills_to_max_size_without_waiting() -> None:
    q = FakeQueue([(0.0, f"r{i}") for i in range(10)])
    assert collect_batch(q.get, 4, 0.05, q.clock) == ["r0", "r1", "r2", "r3"]
    assert q.now == 0.0  # everything was already there: no waiting


def test_waits_at_most_max_delay_after_first_item() -> None:
    q = FakeQueue([(1.0, "a"), (1.02, "b"), (1.04, "c"), (1.2, "late")])
    assert collect_batch(q.get, 16, 0.05, q.clock) == ["a", "b", "c"]
    assert q.now == pytest.approx(1.05)
    assert collect_batch(q.get, 16, 0.05, q.clock) == ["late"]


def test_zero_delay_takes_only_what_is_queued() -> None:
    q = FakeQueue([(0.0, "a"), (0.0, "b"), (0.001, "later")])
    assert collect_batch(q.get, 8, 0.0, q.clock) == ["a", "b"]
    assert q.timeouts[1:] == [0.0, 0.0]


def test_first_timeout_returns_empty() -> None:
    q = FakeQueue([(5.0, "a")])
    assert collect_batch(q.get, 8, 0.01, q.clock, first_timeout=1.0) == []
    assert q.timeouts == [1.0]


def test_first_get_blocks_forever_by_default() -> None:
    q = FakeQueue([(100.0, "a")])
    assert collect_batch(q.get, 8, 0.0, q.clock) == ["a"]
    assert q.timeouts[0] is None


def test_is_last_closes_the_batch() -> None:
    q = FakeQueue([(0.0, "a"), (0.0, "STOP"), (0.0, "b")])
    assert collect_batch(q.get, 8, 1.0, q.clock, is_last=lambda x: x == "STOP") == ["a", "STOP"]
    q2 = FakeQueue([(0.0, "STOP"), (0.0, "b")])
    assert collect_batch(q2.get, 8, 1.0, q2.clock, is_last=lambda x: x == "STOP") == ["STOP"]


def test_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        collect_batch(lambda t: "x", 0, 0.0, lambda: 0.0)


def test_expected_stops_the_wait_once_reached() -> None:
    # A closed loop of 3 clients: as many come back as were answered, then nobody until the
    # batch is answered. Waiting out the delay for a 4th would idle the worker 50 ms.
    q = FakeQueue([(1.0, "a"), (1.001, "b"), (1.002, "c"), (2.0, "next")])
    assert collect_batch(q.get, 16, 0.05, q.clock, expected=3) == ["a", "b", "c"]
    assert q.now == pytest.approx(1.002)


def test_expected_still_takes_what_is_already_queued() -> None:
    q = FakeQueue([(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d"), (0.01, "later")])
    assert collect_batch(q.get, 16, 0.05, q.clock, expected=2) == ["a", "b", "c", "d"]
    assert q.now == 0.0 and q.timeouts[-1] == 0.0  # drained without waiting


def test_expected_beyond_arrivals_waits_the_delay_as_before() -> None:
    q = FakeQueue([(1.0, "a"), (1.02, "b"), (1.2, "late")])
    assert collect_batch(q.get, 16, 0.05, q.clock, expected=8) == ["a", "b"]
    assert q.now == pytest.approx(1.05)


def test_expected_is_capped_by_max_size_and_at_least_one() -> None:
    q = FakeQueue([(0.0, "a"), (0.01, "b")])
    assert collect_batch(q.get, 8, 0.05, q.clock, expected=0) == ["a"]
    q2 = FakeQueue([(0.0, f"r{i}") for i in range(3)] + [(0.01, "late")])
    assert collect_batch(q2.get, 2, 0.05, q2.clock, expected=100) == ["r0", "r1"]
