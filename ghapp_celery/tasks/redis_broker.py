# kombu is only partly typed: its base-class methods are untyped calls.
# mypy: disallow-untyped-calls=False
"""kombu's Redis transport, keeping one Redis client object per channel.

kombu builds a new ``redis.Redis`` object for every operation that does not pass one in:
each publish, and each delivered message's two bookkeeping pipelines in the worker (the
unacknowledged-message index that brings a message back after a crash). Building one costs
about 70 µs with redis-py 8 (it inspects its arguments on every call), which was 5-7% of a
background delivery's CPU. A client object holds no connection of its own (every command
borrows one from the channel's pool) and may be shared by threads, so one per channel and
pool does the same work. Everything else is kombu's.

``make_celery`` selects this transport (Celery's ``broker_transport``) for ``redis://`` and
``rediss://`` URLs unless the configuration names a transport itself.
"""

from __future__ import annotations

from typing import Any

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


class Transport(kombu_redis.Transport):
    Channel = Channel
