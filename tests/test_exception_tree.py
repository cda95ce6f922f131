"""Issue 11 section 5: one exception tree.

Every exception class the package defines lives in ``ghapp_celery.exceptions``, appears in that
module's docstring tree and is a ``GitHubAppError``; every other module only re-exports them.
The walk imports every module of the package, so a class added anywhere else fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import httpx
import pytest

import ghapp_celery
from ghapp_celery import exceptions
from ghapp_celery.exceptions import (
    GitHubAppError,
    GitHubConnectionError,
    GitHubTimeout,
    HandlerTimeout,
    ScheduleTimeout,
    ServerError,
    StoreUnavailable,
)
from ghapp_celery.policy import Outcome, RetryPolicy, classify

# Alembic's env.py runs only under alembic's own context (it reads alembic.context.config).
_NOT_IMPORTABLE = {"ghapp_celery.store.migrations.env"}


def _package_modules() -> list[ModuleType]:
    found = [ghapp_celery]
    for info in pkgutil.walk_packages(ghapp_celery.__path__, "ghapp_celery."):
        if info.name not in _NOT_IMPORTABLE:
            found.append(importlib.import_module(info.name))
    return found


def _exception_classes() -> dict[type[BaseException], list[str]]:
    """Each exception class defined by the package, with the modules that expose it."""
    classes: dict[type[BaseException], list[str]] = {}
    for module in _package_modules():
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("ghapp_celery")
            ):
                classes.setdefault(value, []).append(module.__name__)
    return classes


def _tree_names() -> set[str]:
    doc = exceptions.__doc__ or ""
    tree = doc.split("The tree::", 1)[1]
    return set(re.findall(r"[├└]── (\w+)", tree)) | {"GitHubAppError"}


def test_every_exception_is_defined_in_exceptions_and_drawn_in_its_tree() -> None:
    classes = _exception_classes()
    tree = _tree_names()
    assert len(classes) >= 40  # the walk did find the tree (it is 40 classes today)
    for cls, modules in classes.items():
        where = f"{cls.__qualname__} (exposed by {', '.join(sorted(modules))})"
        assert cls.__module__ == "ghapp_celery.exceptions", f"{where} is defined elsewhere"
        assert getattr(exceptions, cls.__name__) is cls, f"{where} is not exceptions' own"
        assert cls.__name__ in exceptions.__all__, where
        assert issubclass(cls, GitHubAppError), f"{where} is not a GitHubAppError"
        assert cls.__name__ in tree, f"{where} is missing from exceptions' docstring tree"


def test_the_tree_draws_nothing_that_does_not_exist() -> None:
    for name in _tree_names():
        assert issubclass(getattr(exceptions, name), GitHubAppError), name


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("ghapp_celery.store.errors", ["StoreUnavailable", "DeliveryNotFound"]),
        ("ghapp_celery.store", ["StoreUnavailable", "DeliveryNotFound"]),
        ("ghapp_celery.oauth.errors", ["LoginError"]),
        ("ghapp_celery.oauth", ["OAuthFlowError", "InvalidSession"]),
        ("ghapp_celery.oauth.flow", ["OAuthFlowError"]),
        ("ghapp_celery.oauth.sessions", ["InvalidSession"]),
        ("ghapp_celery.tasks.loop", ["HandlerTimeout"]),
        ("ghapp_celery.intake.status", ["StatusError"]),  # status.py before the intake/ move
        ("ghapp_celery.intake.batching", ["ScheduleTimeout"]),  # was _schedule_batch.py
        (
            "ghapp_celery",
            [
                "BodyTimeout",
                "IntakeBusy",
                "PayloadTooLarge",
                "PayloadTooDeep",
                "InvalidHeader",
                "InvalidPayloadField",
                "StoreUnavailable",
                "DeliveryNotFound",
                "GitHubConnectionError",
                "ServerError",
                "HandlerTimeout",
                "OAuthFlowError",
                "InvalidSession",
                "LoginError",
            ],
        ),
    ],
)
def test_old_import_paths_re_export_the_one_class(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert getattr(imported, name) is getattr(exceptions, name), f"{module}.{name}"


def test_the_0_2_7_names_are_unchanged() -> None:
    for name in (
        "GitHubAppError",
        "GitHubAppValidationError",
        "GitHubAppBadCredentials",
        "GithubUnauthorized",
        "GithubAppUnkownObject",
        "GitHubRateLimitError",
    ):
        assert getattr(ghapp_celery, name) is getattr(exceptions, name)


def test_policy_classifies_by_isinstance_not_by_name() -> None:
    policy = RetryPolicy(max_retries=3)

    class HandlerTimeoutLookalike(GitHubAppError):
        """Named like a transient class but not one: a name match would retry it."""

    HandlerTimeoutLookalike.__name__ = "HandlerTimeout"

    class MyTimeout(HandlerTimeout):
        """A subclass is what isinstance sees and a name match would not."""

    assert classify(HandlerTimeoutLookalike(), policy) is Outcome.FAIL
    assert classify(MyTimeout(), policy) is Outcome.RETRY
    assert classify(HandlerTimeout(), policy) is Outcome.RETRY
    assert classify(GitHubConnectionError(), policy) is Outcome.RETRY
    assert classify(GitHubTimeout(), policy) is Outcome.RETRY
    assert classify(ServerError("boom", 502), policy) is Outcome.RETRY
    assert classify(ScheduleTimeout(), policy) is Outcome.RETRY
    assert classify(httpx.ConnectError("refused"), policy) is Outcome.RETRY
    assert classify(StoreUnavailable(), policy) is Outcome.FAIL
