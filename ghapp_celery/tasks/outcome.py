"""Store writes a run cannot do without, retried through a short store outage.

A worker that ran a handler holds the only knowledge of its outcome. When the write of that
outcome failed, the task used to fail with it: the run stayed STARTED, its lease expired,
and the sweeper ran the finished handler again (a 7 s PostgreSQL outage re-ran 4 runs,
issue 10). So the worker keeps the outcome and writes it again, with exponential backoff,
for up to ``GITHUBAPP_OUTCOME_WRITE_TIMEOUT`` seconds (120 by default: longer than a typical
PostgreSQL failover), while the lease keeper goes on renewing the run's lease. Only an outage
longer than that, or longer than the lease, can make a finished run execute again.

The claim is retried the same way, so a message delivered during an outage waits for the
store instead of being dropped until the sweeper's queued-too-long republish.

Retrying is safe because every one of these writes is conditional on the run's state: a
write that committed but whose answer was lost is refused the second time (a finish of a
finished run, a claim of a run whose lease is live), never applied twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from ..store.errors import StoreUnavailable

__all__ = ["write_through_outage"]

LOG = logging.getLogger("ghapp_celery.tasks")

T = TypeVar("T")

FIRST_DELAY = 0.1
# Short enough that a write lands within a second of the store coming back, before the
# sweeper (every 30 s by default) can take the run's lease for lapsed.
MAX_DELAY = 1.0


def write_through_outage(
    write: Callable[[], T],
    *,
    what: str,
    run_id: str,
    within: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``write()``, tried again while it raises StoreUnavailable, for ``within`` seconds.

    The last StoreUnavailable is raised once the time is up (``within=0``: one try only).
    """
    deadline = time.monotonic() + within
    delay = FIRST_DELAY
    tries = 0
    while True:
        try:
            result = write()
        except StoreUnavailable:
            tries += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                LOG.error(
                    "Could not record %s of run %s: the store was unavailable for %.0f s "
                    "(%d tries); the sweeper will run it again",
                    what,
                    run_id,
                    within,
                    tries,
                )
                raise
            if tries == 1:
                LOG.warning(
                    "Store unavailable recording %s of run %s; retrying for up to %.0f s",
                    what,
                    run_id,
                    within,
                )
            sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY)
            continue
        if tries:
            LOG.info("Recorded %s of run %s after %d retries", what, run_id, tries)
        return result
