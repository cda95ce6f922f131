"""The Celery app of a GitHubApp: configuration, the embedded SQLite broker, queues and routes.

Configuration comes from ``celeryconfig.py`` (or ``GITHUBAPP_CELERY_CONFIG_MODULE``) when it
can be imported, then ``CELERY_BROKER_URL``; whatever is still unset gets the defaults below.
With no broker configured at all, messages go through kombu's SQLAlchemy transport on a SQLite
file in ``GITHUBAPP_DATA_DIR``: nothing to install, good for a laptop and for tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery

from ..routing import DEFAULT_QUEUE, HandlerRegistry
from .rabbitmq import configure_rabbitmq, is_amqp_broker, make_queue

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "EMBEDDED_POLLING_INTERVAL",
    "RELIABILITY_DEFAULTS",
    "broker_location",
    "broker_problem",
    "broker_unreachable",
    "config_module_problem",
    "connect_startup_check",
    "embedded_broker_url",
    "is_sqlite_broker",
    "make_celery",
    "prepare_sqlite_broker",
    "sqlite_broker_path",
]

LOG = logging.getLogger("ghapp_celery.tasks")

#: Seconds between polls of an idle embedded broker; a busy one does not sleep.
EMBEDDED_POLLING_INTERVAL = 0.1

#: Applied when neither celeryconfig nor the app set them (DESIGN section 4).
RELIABILITY_DEFAULTS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "task_serializer": "json",
    "accept_content": ["json"],
    "event_serializer": "json",
    "broker_connection_retry_on_startup": True,
    "task_default_queue": DEFAULT_QUEUE,
    "worker_hijack_root_logger": False,
}


# The "sqlite" scheme is registered with kombu in tasks/__init__.py.
REDIS_TRANSPORT = "ghapp_celery.tasks.redis_broker:Transport"
_SQLITE_PREFIXES = ("sqlite:///", "sqla+sqlite:///")  # ours, and kombu's SQLAlchemy transport


def embedded_broker_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'broker.sqlite').resolve()}"


def is_sqlite_broker(url: str | None) -> bool:
    return bool(url) and str(url).startswith(_SQLITE_PREFIXES)


def sqlite_broker_path(url: str) -> Path:
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    raise ValueError(f"not a SQLite broker URL: {url!r}")


def prepare_sqlite_broker(url: str, polling_interval: float = EMBEDDED_POLLING_INTERVAL) -> None:
    """Ready a SQLite file for use as a broker by several processes at once.

    WAL lets the web process publish while workers poll (the mode is stored in the file, so
    setting it once covers every later connection). For kombu's own ``sqla+sqlite://``
    transport, which passes every broker transport option to ``create_engine``, the polling
    interval is set on its class (measured: a ``polling_interval`` option breaks the worker);
    ``sqlite://`` (tasks/sqlite_broker.py) has its own.
    """
    path = sqlite_broker_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=30) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    if url.startswith("sqla+"):
        from kombu.transport import sqlalchemy as kombu_sqlalchemy

        kombu_sqlalchemy.Transport.polling_interval = polling_interval


def config_module_problem(settings: Settings) -> str | None:
    """Why the Celery settings module named by GITHUBAPP_CELERY_CONFIG_MODULE cannot be
    imported, or None. Only a module named on purpose counts: the default ``celeryconfig`` is
    optional. Checked at start-up (``connect_startup_check``, the web app's) and by the CLI
    rather than raised by ``make_celery``, which runs at the user's module import, where an
    exception becomes a traceback."""
    name = settings.celery_config_module
    if "celery_config_module" not in settings.model_fields_set:
        return None
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing, or an empty name
        found = False
    if found:
        return None
    return (
        f"GITHUBAPP_CELERY_CONFIG_MODULE={name} cannot be imported (no module {name!r} on "
        "sys.path): fix the name, or unset it to use ghapp_celery's Celery defaults"
    )


def _load_config_module(celery: Celery, name: str) -> set[str]:
    """Load the user's Celery settings module; returns the setting names it defines."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists but one of its imports is missing
            raise
        # A module named on purpose but missing is refused at start-up (config_module_problem).
        LOG.debug("No %s module; using ghapp_celery's Celery defaults", name)
        return set()
    celery.config_from_object(module)
    return {key for key in vars(module) if not key.startswith("_")}


def _registry_router(registry: HandlerRegistry) -> Callable[..., dict[str, str] | None]:
    """A Celery task router sending each handler's task to that handler's queue."""

    def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        for spec in registry.background():
            if spec.task_name == name:
                return {"queue": spec.queue}
        return None

    return route


def declare_queues(celery: Celery, registry: HandlerRegistry) -> None:
    """Declare github.default plus every handler's queue, so a worker without -Q takes all.

    Called as handlers register, which happens when the app module is imported: before a
    worker builds its consumers from ``task_queues``.
    """
    names = [DEFAULT_QUEUE, *dict.fromkeys(spec.queue for spec in registry.background())]
    celery.conf.task_queues = [make_queue(celery, name) for name in names]


def make_celery(
    registry: HandlerRegistry, settings: Settings, *, main: str = "ghapp_celery"
) -> Celery:
    """Build the Celery app for a GitHubApp's handlers."""
    celery = Celery(main, set_as_current=False)
    defined = _load_config_module(celery, settings.celery_config_module)
    events = {
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
    }
    for key, value in {**RELIABILITY_DEFAULTS, **events}.items():
        # What the user's config module sets wins (config_from_object does not count as a
        # change in celery.conf.changes, so look at the module itself).
        if key not in defined and key not in celery.conf.changes:
            celery.conf[key] = value

    broker = os.environ.get("CELERY_BROKER_URL") or celery.conf.broker_url
    if not broker:
        broker = embedded_broker_url(settings.data_dir)
    celery.conf.broker_url = broker
    if not is_sqlite_broker(broker) and "visibility_timeout" not in (
        celery.conf.broker_transport_options or {}
    ):
        # Redis/SQS: an unacknowledged message comes back after this long. Without
        # celeryconfig.py it would be kombu's 1 h default too; say so explicitly.
        celery.conf.broker_transport_options = {
            **(celery.conf.broker_transport_options or {}),
            "visibility_timeout": 3600,
        }
    if is_amqp_broker(broker):
        configure_rabbitmq(celery, settings, defined)  # quorum queues (tasks/rabbitmq.py)
    if str(broker).startswith(("redis://", "rediss://")) and not celery.conf.broker_transport:
        celery.conf.broker_transport = REDIS_TRANSPORT  # kombu's, one client per channel
    if is_sqlite_broker(broker):
        prepare_sqlite_broker(broker)
        if broker.startswith("sqla+"):
            # Only create_engine() arguments may go here (see prepare_sqlite_broker); a busy
            # timeout lets several processes write the file without "database is locked".
            celery.conf.broker_transport_options = {"connect_args": {"timeout": 30}}
    if broker.startswith("sqla+"):
        # kombu's SQLAlchemy transport builds its engine from these options: without
        # hide_parameters a failed INSERT's message (and the traceback Celery logs) holds the
        # message body, which carries the delivery's payload (as the store's engine does).
        celery.conf.broker_transport_options = {
            **(celery.conf.broker_transport_options or {}),
            "hide_parameters": True,
        }

    user_routes = celery.conf.task_routes
    routes: list[Any] = (
        list(user_routes)
        if isinstance(user_routes, (list, tuple))
        else ([user_routes] if user_routes else [])
    )
    # The user's routes (celeryconfig task_routes) come first, so they can move any handler.
    celery.conf.task_routes = [*routes, _registry_router(registry)]
    declare_queues(celery, registry)
    connect_tracing_signals()
    return celery


def queue_of(celery: Celery, task_name: str) -> str:
    """The queue Celery's routers pick for ``task_name`` (user routes first, then ours)."""
    route = celery.amqp.router.route({}, task_name, (), {})
    queue = route.get("queue")
    return str(getattr(queue, "name", queue) or DEFAULT_QUEUE)


def _scheme(celery: Celery) -> str:
    return str(celery.conf.broker_url).split("://", 1)[0] + "://"


def broker_problem(celery: Celery) -> str | None:
    """Why the broker URL cannot work whatever the network does (an unknown transport, its
    client package not installed), or None. Nothing is connected."""
    try:
        with celery.connection_for_write() as connection:
            connection.transport  # noqa: B018  (resolving it imports the client package)
    except KeyError:
        return f"CELERY_BROKER_URL: no broker transport for {_scheme(celery)} URLs"
    except ImportError as exc:
        extra = " (pip install 'ghapp-celery[redis]')" if exc.name == "redis" else ""
        return (
            f"CELERY_BROKER_URL is a {_scheme(celery)} URL, whose client package "
            f"{exc.name or ''!r} is not installed{extra}"
        )
    return None


def broker_location(celery: Celery) -> str:
    """The broker URL with its password masked, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(str(celery.conf.broker_url)))


def broker_unreachable(celery: Celery, timeout: float = 5.0) -> str | None:
    """Why the broker cannot be reached now (one attempt, ``timeout`` seconds), or None."""
    where = broker_location(celery)
    with celery.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"The broker at {where} is unreachable: {type(exc).__name__} {first}".strip()
    return None


def connect_startup_check(celery: Celery, check: Callable[[], None]) -> None:
    """Run ``check`` when a worker of ``celery`` starts (before it connects or forks); a
    ConfigurationError it raises stops the worker with its message as the one line it prints.

    ``celeryd_init``, not ``worker_init``: it is sent first, and SystemExit passes through
    Celery's signal dispatch, which logs and swallows every Exception.
    """
    from celery import signals

    from ..exceptions import ConfigurationError

    def on_worker_start(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is not celery:
            return
        try:
            check()
        except ConfigurationError as exc:
            raise SystemExit(f"ghapp_celery: the worker cannot start: {exc}") from None

    signals.celeryd_init.connect(
        on_worker_start, weak=False, dispatch_uid=f"ghapp_celery.startup.{id(celery)}"
    )


def connect_tracing_signals() -> None:
    """Set tracing up in each worker process and flush its batched spans when it ends.

    Prefork: in the child, after the fork (``worker_process_init``), so the exporter's thread
    lives in the process that makes the spans; threads and solo: in the worker itself
    (``worker_init``). Shutdown: ``worker_process_shutdown`` in a prefork child (which leaves
    by ``os._exit``, past atexit), ``worker_shutdown`` in the main process. Process-wide and
    idempotent (``dispatch_uid``); with tracing off each handler returns at once.
    """
    from celery import signals

    from ..observability import tracing

    def on_init(sender: Any = None, **_: Any) -> None:
        pool = getattr(sender, "pool_cls", None)
        name = (pool.__module__ if isinstance(pool, type) else str(pool or "prefork")).lower()
        if "prefork" not in name and "processes" not in name:
            tracing.setup("worker")

    def on_process_init(**_: Any) -> None:
        tracing.setup("worker")

    def on_shutdown(**_: Any) -> None:
        tracing.flush()

    uid = "ghapp_celery.tracing"
    signals.worker_init.connect(on_init, weak=False, dispatch_uid=f"{uid}.init")
    signals.worker_process_init.connect(
        on_process_init, weak=False, dispatch_uid=f"{uid}.process_init"
    )
    signals.worker_process_shutdown.connect(
        on_shutdown, weak=False, dispatch_uid=f"{uid}.process_shutdown"
    )
    signals.worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid=f"{uid}.shutdown")
