"""Errors raised by the delivery store; both sit under GitHubAppError like every other one."""

from __future__ import annotations

from ..exceptions import GitHubAppError

__all__ = ["DeliveryNotFound", "StoreUnavailable"]


class StoreUnavailable(GitHubAppError):
    """The database could not be reached or refused the operation.

    The message is deliberately generic: database errors often quote the URL (with its
    password) or the SQL, and this message ends up in HTTP answers and logs. The original
    exception is chained as ``__cause__`` for whoever needs the detail.
    """

    default_message = "The delivery store is unavailable"


class DeliveryNotFound(GitHubAppError, KeyError):
    """No delivery with that id is stored. A KeyError too, so ``except KeyError`` works."""

    default_message = "Delivery not found"

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message, adding quotes.
        return self.message
