"""Construction shared by AsyncGitHubClient and GitHubClient: credentials, session, URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import httpx

from ghapp_celery.exceptions import ConfigurationError, GraphQLError, RateLimited
from ghapp_celery.github._client_auth import (
    AppJWTCredentials,
    Credentials,
    InstallationCredentials,
    TokenCredentials,
)
from ghapp_celery.github._client_core import GitHubResponse
from ghapp_celery.github._client_session import Exchange, GitHubSession
from ghapp_celery.github.ratelimit import RateLimit, rate_limit_info

if TYPE_CHECKING:  # auth.py imports the clients to mint through them
    from ghapp_celery.github.auth import GitHubAppAuth

__all__ = ["ClientBase"]


class ClientBase:
    """Who the client is and which session it uses (see AsyncGitHubClient for the options)."""

    def __init__(
        self,
        auth: GitHubAppAuth | None = None,
        installation_id: int | None = None,
        *,
        token: str | None = None,
        identity: str | None = None,
        base_url: str | None = None,
        session: GitHubSession | None = None,
        **session_options: Any,
    ) -> None:
        self.auth = auth
        self.installation_id = None if installation_id is None else int(installation_id)
        self.credentials = self._credentials(auth, self.installation_id, token, identity)
        if session is not None and session_options:
            raise TypeError("pass session options or a session, not both")
        if session is None:
            if base_url is None and auth is not None:
                base_url = auth.base_url
            session = GitHubSession(base_url, **session_options)
            self._owns_session = True
        else:
            self._owns_session = False
        self.session = session

    @staticmethod
    def _credentials(
        auth: GitHubAppAuth | None,
        installation_id: int | None,
        token: str | None,
        identity: str | None,
    ) -> Credentials:
        if token is not None:
            return TokenCredentials(token, identity)
        if auth is None:
            raise ConfigurationError("a GitHub client needs a GitHubAppAuth or a token")
        if installation_id is not None:
            return InstallationCredentials(auth, installation_id)
        return AppJWTCredentials(auth)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.credentials.identity!r}, {self.session.rest_url!r})"

    @property
    def identity(self) -> str:
        """``installation:ID``, ``app:ID`` or ``user:…``: the key of limits and cache entries."""
        return self.credentials.identity

    @property
    def rest_url(self) -> str:
        return self.session.rest_url

    @property
    def graphql_url(self) -> str:
        return self.session.graphql_url

    def _view(self, installation_id: int | None) -> Self:
        view = object.__new__(type(self))
        ClientBase.__init__(view, self.auth, installation_id, session=self.session)
        return view

    def for_installation(self, installation_id: int) -> Self:
        """A client for another installation on the same session (pool, cache, limits)."""
        return self._view(installation_id)

    def as_app(self) -> Self:
        """A client acting as the app itself (JWT), e.g. for ``/app/hook/deliveries``."""
        return self._view(None)

    def _exchange(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        cache: bool,
        retry: bool | None,
    ) -> Exchange:
        """The I/O-free state of one call; the async and blocking clients only drive it."""
        full = self.session.url(url)
        if params:
            full = str(httpx.URL(full).copy_merge_params(_query(params)))
        creds = self.credentials
        return Exchange(
            self.session,
            creds.identity,
            method,
            full,
            headers=headers,
            use_cache=cache,
            refused=creds.refused,
            retry=retry,
        )

    def rate_limit(self, resource: str = "core") -> RateLimit | None:
        """The last rate limit GitHub reported for this identity and resource, if any."""
        return self.session.tracker.get(self.identity, resource)

    @staticmethod
    def _graphql_body(query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = variables
        return body

    @staticmethod
    def _is_mutation(query: str) -> bool:
        return query.lstrip().startswith("mutation")

    def _graphql_result(self, response: GitHubResponse) -> Any:
        body = response.data
        if not isinstance(body, dict):
            raise GraphQLError([{"message": "GitHub sent a GraphQL answer that is not JSON"}])
        errors = body.get("errors")
        if errors:
            errors = errors if isinstance(errors, list) else [errors]
            if any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in errors):
                raise self._graphql_rate_limited(response, errors)
            raise GraphQLError(errors, body.get("data"), response.status)
        return body.get("data")

    def _graphql_rate_limited(self, response: GitHubResponse, errors: list[Any]) -> RateLimited:
        # GraphQL signals its primary limit with HTTP 200, an error and remaining = 0.
        now = self.session.clock()
        limit = response.rate_limit
        reset = float(limit.reset) if limit else now + 60.0
        message = str(errors[0].get("message", "GraphQL rate limit exceeded"))
        return RateLimited(
            message,
            response.status,
            response.data,
            retry_after=max(0.0, reset - now),
            reset_at=reset,
            resource="graphql",
            rate_limit_info=rate_limit_info(response.headers),
            request_id=response.request_id,
            method="POST",
            url=response.url,
        )


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Query values as GitHub reads them: booleans lower-case, lists comma-joined, no Nones."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out[key] = value
    return out
