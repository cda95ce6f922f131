"""write_through_outage: the bounded retry behind a worker's claim and outcome writes."""

from __future__ import annotations

import pytest

from ghapp_celery.store import StoreUnavailable
from ghapp_celery.tasks.outcome import MAX_DELAY, write_through_outage


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable()
        return True


def test_a_write_is_retried_with_backoff_until_it_lands() -> None:
    sleeps: list[float] = []
    write = Flaky(failures=6)
    assert write_through_outage(write, what="success", run_id="r", within=60, sleep=sleeps.append)
    assert write.calls == 7
    assert sleeps == [0.1, 0.2, 0.4, 0.8, MAX_DELAY, MAX_DELAY]


def test_past_the_bound_the_last_error_is_raised(caplog: pytest.LogCaptureFixture) -> None:
    write = Flaky(failures=10**6)
    with pytest.raises(StoreUnavailable):
        write_through_outage(write, what="success", run_id="r-1", within=0.3)
    assert write.calls >= 2
    assert "Could not record success of run r-1" in caplog.text


def test_within_zero_tries_once() -> None:
    write = Flaky(failures=1)
    with pytest.raises(StoreUnavailable):
        write_through_outage(write, what="the claim", run_id="r", within=0)
    assert write.calls == 1


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        write_through_outage(broken, what="success", run_id="r", within=60)
    assert calls == [1]
