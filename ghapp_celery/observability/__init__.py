"""What an operator sees: traces (OpenTelemetry), metrics (Prometheus) and log context.

Three independent parts, each off until it is installed and asked for, so a plain install
imports neither ``opentelemetry`` nor ``prometheus_client`` and pays nothing on a delivery:

- ``tracing``: one trace per delivery, from the webhook's server span through the Celery
  message to the handler run and each GitHub call (extra ``[otel]``);
- ``metrics``: the intake's, the runs', the queues' and the GitHub client's series for
  Prometheus (extra ``[prometheus]``);
- ``logs``: the delivery and run a log line belongs to, as ``extra`` fields and in an
  optional JSON format (no extra).

This package sits at the bottom of the import layers (pyproject.toml): the intake, the tasks
and the GitHub client call into it, it calls into none of them, and it is the only part of
ghapp_celery that imports ``opentelemetry`` or ``prometheus_client``.
"""
