"""The quickstart's Celery app, plus the ready marker the test worker helper waits for."""

from examples.quickstart.app import celery
from tests._workers import install_ready_marker

install_ready_marker()

__all__ = ["celery"]
