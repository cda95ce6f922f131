# kombu is only partly typed: its base-class methods are untyped calls.
# mypy: disallow-untyped-calls=False
"""kombu's Redis transport, keeping one Redis client object per channel, surviving a Redis crash.

kombu builds a new ``redis.Redis`` object for every operation that does not pass one in:
each publish, and each delivered message's two bookkeeping pipelines in the worker (the
unacknowledged-message index that brings a message back after a crash). Building one costs
about 70 µs with redis-py 8 (it inspects its arguments on every call), which was 5-7% of a
background delivery's CPU. A client object holds no connection of its own (every command
borrows one from the channel's pool) and may be shared by threads, so one per channel and
pool does the same work.

A channel whose transport was detached from its connection raises a connection error where
kombu raises AttributeError, so that a worker that loses Redis reconnects instead of exiting
(see ``Channel._connparams``). Everything else is kombu's.

``make_celery`` selects this transport (Celery's ``broker_transport``) for ``redis://`` and
``rediss://`` URLs unless the configuration names a transport itself.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # kombu keeps its asynchronous client itself
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        # kombu replaces the pool after a connection error; follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client

    def _connparams(self, asynchronous: bool = False) -> Any:
        # kombu 5.7.0 (redis-py 8.1.0; kombu's main branch is the same): when Redis dies while
        # the worker waits in BRPOP with a message unacknowledged, Celery's consumer calls
        # Connection.collect(), whose Channel.close() stops at the pending BRPOP's
        # ConnectionError before it marks the channel closed or restores the message; collect()
        # then sets transport.client to None; Celery's connection.close() closes the same
        # channel again, and restoring the message needs a new pool, whose parameters kombu
        # reads from transport.client.hostname: AttributeError. That is not a connection error,
        # so Celery exits with "Unrecoverable error". The same happens to a late ack on such a
        # channel. Without a connection there is nothing to connect to: say so the way Redis
        # would, and Celery reconnects. The message stays in Redis's unacknowledged index
        # (restored after visibility_timeout); the store's sweeper covers an empty Redis.
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError("kombu channel closed: no broker connection")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
