"""Celery settings for ghapp_celery apps, read from the environment.

``GitHubApp.celery`` loads this module when it can import it (``GITHUBAPP_CELERY_CONFIG_MODULE``
names another), then fills in what is left unset. Copy it next to your app to change anything:
every name is a standard Celery setting.
"""

import os

# No broker configured: the embedded SQLite broker in GITHUBAPP_DATA_DIR (set by GitHubApp).
# Production: CELERY_BROKER_URL=redis://127.0.0.1:6379/0 (or amqp://...).
broker_url = os.environ.get("CELERY_BROKER_URL") or None

# The store is the source of truth for every run; Celery results are not needed.
task_ignore_result = True
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or None

# Reliability: acknowledge after the handler ran, give the message back if the worker dies,
# and take one message at a time so a crash strands as little as possible.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True

# Redis/SQS: a message not acknowledged within this many seconds is delivered again.
broker_transport_options = {
    "visibility_timeout": int(os.environ.get("GITHUBAPP_VISIBILITY_TIMEOUT", "3600")),
}

# JSON only: the messages carry webhook payloads, never pickles (or tokens).
task_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# Events for Flower and `celery events` are off unless GITHUBAPP_TASK_EVENTS=true (or the
# workers run with -E), as in Celery: each task then costs several extra broker publishes.
# Setting worker_send_task_events / task_send_sent_event here overrides that, as any setting
# here overrides ghapp_celery's defaults.
