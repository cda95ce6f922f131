"""RabbitMQ (``amqp://``): quorum queues by default, and the settings they need.

Quorum queues are replicated and survive a node's loss, which is why Celery 5.5+ recommends
them; they need three things a classic-queue setup does not:

* publisher confirms (``confirm_publish``): without them a publish returns before the broker
  has the message, and Celery users lost tasks on quorum queues; with them the intake's 202
  means the broker has it (or the store's sweeper publishes it later);
* no global QoS (quorum queues refuse ``basic.qos(global=True)``): Celery turns it off when it
  sees a queue with ``x-queue-type: quorum`` and ``worker_detect_quorum_queues`` is on;
* native delayed delivery for countdowns (a retry's wait): Celery routes a delayed message
  through its ``celery_delayed_*`` topic exchanges, which only reach a queue whose own
  exchange is a topic (or fanout) exchange; with a direct one the worker holds the message
  until its ETA instead, blocking a slot. So our quorum queues get topic exchanges.

What the user's celeryconfig sets wins over each of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kombu.entity import Exchange, Queue

if TYPE_CHECKING:
    from celery import Celery

    from ..config import Settings

__all__ = ["AMQP_SCHEMES", "QUEUE_TYPE_KEY", "configure_rabbitmq", "is_amqp_broker", "make_queue"]

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")

#: Where make_celery leaves the queue type for declare_queues, which runs again each time a
#: handler registers and has only the Celery app at hand.
QUEUE_TYPE_KEY = "ghapp_rabbitmq_queue_type"


def is_amqp_broker(url: object) -> bool:
    return str(url or "").startswith(AMQP_SCHEMES)


def configure_rabbitmq(celery: Celery, settings: Settings, defined: set[str]) -> None:
    """Set what quorum queues need on a RabbitMQ broker, unless the user's config set it.

    ``defined``: the setting names the user's celeryconfig module defines.
    """

    def default(key: str, value: Any) -> None:
        if key not in defined and key not in celery.conf.changes:
            celery.conf[key] = value

    queue_type = settings.rabbitmq_queue_type
    celery.conf[QUEUE_TYPE_KEY] = queue_type
    # Confirms for classic queues too: a 202 should mean the broker has the message either way.
    options = dict(celery.conf.broker_transport_options or {})
    options.setdefault("confirm_publish", True)
    celery.conf.broker_transport_options = options
    if queue_type == "quorum":
        # Queues Celery declares itself (task_create_missing_queues) match ours.
        default("task_default_queue_type", "quorum")
        default("task_create_missing_queue_type", "quorum")
        default("task_create_missing_queue_exchange_type", "topic")
        # Celery's defaults today; set so a change of default cannot bring global QoS back.
        default("worker_detect_quorum_queues", True)
        default("broker_native_delayed_delivery_queue_type", "quorum")


def make_queue(celery: Celery, name: str) -> Queue:
    """One of our queues, as the broker's type asks for."""
    if is_amqp_broker(celery.conf.broker_url) and celery.conf.get(QUEUE_TYPE_KEY) == "quorum":
        return Queue(  # type: ignore[no-untyped-call]
            name,
            Exchange(name, type="topic"),  # type: ignore[no-untyped-call]
            routing_key=name,
            queue_arguments={"x-queue-type": "quorum"},
        )
    return Queue(name, routing_key=name)  # type: ignore[no-untyped-call]
