"""FakeGitHub: a real ASGI app that answers like GitHub's App endpoints, for tests over loopback.

It checks what GitHub checks (the app JWT's RS256 signature and time claims on a ``FakeClock``,
installation tokens and their expiry, the API version header), answers with GitHub's shapes and
``x-ratelimit-*`` headers, keeps a budget per credential, and lets a test switch faults on:
``fail_next``, ``exhaust_primary_limit``, ``secondary_limit`` and ``latency``.

Beyond the App endpoints it serves repositories (``add_repo``: issues, comments, labels, pulls,
reviews, checks, statuses, contents, search), the app's webhook deliveries (``add_delivery``) and
GraphQL (``graphql_resolver``). GET answers carry an ``ETag``; a matching ``If-None-Match`` gets
``304 Not Modified``, free of primary rate limit when authorized, as on GitHub. Each credential
has a bucket per resource (``core``, ``search``, ``graphql``) named in ``x-ratelimit-resource``.

Served with ``with fake.serve() as url:`` (uvicorn on 127.0.0.1) or, for GitHub Enterprise
Server's layout, ``with fake.serve(prefix="/api/v3") as url:``. The state lives on one object
shared by the server thread and the test, behind one lock.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ghapp_celery._fake_github_api import FakeRepo
from ghapp_celery._fake_github_app import FakeAppEndpointsMixin
from ghapp_celery._fake_github_graphql import default_resolver
from ghapp_celery._fake_github_more import register_api
from ghapp_celery._fake_github_parts import (
    API_VERSIONS,
    JWT_DECODE_ERROR,
    RATE_DOCS,
    RATE_WINDOW,
    SECONDARY_MESSAGE,
    AuthKind,
    Bucket,
    Credential,
    FakeClock,
    Fault,
    Handler,
    IssuedToken,
    RecordedRequest,
    Reply,
    check_app_jwt,
    error_reply,
    make_private_key,
    public_key_pem,
    request_id,
)
from ghapp_celery._fake_github_state import FakeStateMixin, public, resource_of
from ghapp_celery._server import serve

__all__ = [
    "Credential",
    "FakeClock",
    "FakeGitHub",
    "FakeRepo",
    "IssuedToken",
    "RecordedRequest",
    "Reply",
    "make_private_key",
    "public_key_pem",
]


class FakeGitHub(FakeAppEndpointsMixin, FakeStateMixin):
    """GitHub's App endpoints on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        app_id: int = 12345,
        private_key_pem: str | None = None,
        clock: FakeClock | None = None,
        installations: int = 3,
        rate_limit: int = 5000,
        token_ttl: int = 3600,
        token_format: Literal["classic", "stateless"] = "classic",  # noqa: S107  (not a secret)
        latency: float = 0.0,
        client_id: str = "Iv23liFakeClientId",
    ) -> None:
        self.app_id = app_id
        self.client_id = client_id
        self.slug = "fake-app"
        self.private_key_pem = private_key_pem or make_private_key()
        self.public_key_pem = public_key_pem(self.private_key_pem)
        self.clock = clock or FakeClock()
        self.rate_limit = rate_limit
        self.token_ttl = token_ttl
        # GitHub's installation tokens: the classic 40 characters, or, rolled out from April
        # 2026, the stateless ``ghs_<app id>_<JWT>`` (hundreds of characters).
        if token_format not in ("classic", "stateless"):
            raise ValueError(f"token_format must be 'classic' or 'stateless', not {token_format!r}")
        self.token_format = token_format
        self.latency = latency
        self.permissions = {"contents": "read", "issues": "write", "metadata": "read"}
        self.events = ["issues", "issue_comment", "pull_request", "push"]
        self.created = int(self.clock())
        self.installation_ids = [40_000_001 + n for n in range(installations)]
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[int] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.base_url: str | None = None
        self.root_url: str | None = None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._secondary: list[int | None] = []
        self._exhausted_until: int | None = None
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self.repos: dict[str, FakeRepo] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.graphql_resolver = default_resolver
        self.not_modified = 0  # how many 304s were answered
        self.app = Starlette(
            routes=[
                self._route("/app", self._get_app, "jwt"),
                self._route("/app/installations", self._list_installations, "jwt"),
                self._route("/app/installations/{installation_id:int}", self._get_inst, "jwt"),
                self._route(
                    "/app/installations/{installation_id:int}/access_tokens",
                    self._create_token,
                    "jwt",
                    ("POST",),
                ),
                self._route("/installation/repositories", self._repositories, "token"),
                self._route("/installation/token", self._revoke, "token", ("DELETE",)),
            ],
            exception_handlers={HTTPException: self._http_exception},
        )
        self._api = register_api(self)

    # -- what a test drives ----------------------------------------------------------------------

    def asgi(self, prefix: str = "") -> Any:
        """The ASGI app to serve: the API under ``prefix``. With GitHub Enterprise Server's
        ``/api/v3``, GraphQL is at ``/api/graphql`` as there."""
        prefix = prefix.rstrip("/")
        if not prefix:
            return self.app
        routes: list[Any] = [Mount(prefix, app=self.app)]
        if prefix.endswith("/api/v3"):
            graphql_path = prefix[: -len("/v3")] + "/graphql"
            routes.append(self._route(graphql_path, self._api.graphql, "token", ("POST",)))
        return Starlette(routes=routes)

    @contextmanager
    def serve(self, prefix: str = "") -> Iterator[str]:
        """Serve on 127.0.0.1; yield the API base URL (the root URL plus ``prefix``)."""
        prefix = prefix.rstrip("/")
        with serve(self.asgi(prefix)) as root:
            self.root_url, self.base_url = root, root + prefix
            try:
                yield self.base_url
            finally:
                self.root_url = self.base_url = None

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        auth: AuthKind = "token",
        methods: tuple[str, ...] = ("GET",),
    ) -> None:
        """Serve one more endpoint through the same checks (auth, faults, rate limits, log)."""
        self.app.router.routes.append(self._route(path, handler, auth, methods))

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        path_prefix: str | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> None:
        """Answer the next ``times`` requests (under ``path_prefix``) with ``status``."""
        body = json if json is not None else error_reply(status).body
        with self._lock:
            self._faults.append(Fault(status, times, path_prefix, dict(headers or {}), body))

    def exhaust_primary_limit(self, reset_in: int = 60) -> None:
        """Every authenticated call gets GitHub's primary-limit 403 until ``reset_in`` s pass."""
        with self._lock:
            self._exhausted_until = int(self.clock()) + reset_in

    def secondary_limit(self, times: int = 1, retry_after: int | None = 60) -> None:
        """The next ``times`` authenticated calls hit a secondary limit (403)."""
        with self._lock:
            self._secondary.extend([retry_after] * times)

    def token_is_valid(self, token: str) -> bool:
        with self._lock:
            issued = self.tokens.get(token)
        return issued is not None and not issued.revoked and self.clock() < issued.expires_at

    def token_request_count(self, installation_id: int | None = None) -> int:
        with self._lock:
            ids = list(self.token_requests)
        return len(ids) if installation_id is None else ids.count(installation_id)

    # -- the pipeline every request goes through -------------------------------------------------

    def _route(
        self, path: str, handler: Handler, auth: AuthKind, methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._handle(request, handler, auth)

        return Route(path, endpoint, methods=list(methods))

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return self._respond(request, error_reply(status), self._peek("anonymous", 60))

    async def _handle(self, request: Request, handler: Handler, auth: AuthKind) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        path = self._record(request, await request.body())
        now = self.clock()
        fault = self._take_fault(path)
        if fault is not None:
            reply = Reply(fault.status, fault.body, fault.headers)
            return self._respond(request, reply, self._peek("anonymous", 60))
        version = request.headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            reply = error_reply(400, f"The '{version}' API version is not supported.")
            return self._respond(request, reply, self._peek("anonymous", 60))
        if not request.headers.get("user-agent"):
            reply = error_reply(
                403,
                "Request forbidden by administrative rules. Please make sure your "
                "request has a User-Agent header.",
            )
            return self._respond(request, reply, self._peek("anonymous", 60))
        credential = Credential("none", "anonymous")
        if auth != "none":
            found = self._authenticate(request, auth, now)
            if isinstance(found, Reply):
                return self._respond(request, found, self._peek("anonymous", 60))
            credential = found
        resource = resource_of(path)
        limit = 60 if credential.key == "anonymous" else self.rate_limit
        if resource == "search":
            limit = 10 if credential.key == "anonymous" else 30
        with self._lock:
            bucket = self._bucket(credential.key, limit, now, resource)
            exhausted = self._exhausted_until is not None and now < self._exhausted_until
            limited = exhausted or bucket.used >= bucket.limit
            secondary = not limited and bool(self._secondary)
            retry_after = self._secondary.pop(0) if secondary else None
            if not limited and not secondary:
                bucket.used += 1
        if limited:
            return self._respond(request, self._primary_reply(request, credential), bucket)
        if secondary:
            return self._respond(request, self._secondary_reply(retry_after), bucket)
        # Endpoints mutate state only between awaits, so one event loop keeps them atomic.
        reply = await handler(request, credential)
        reply = self._conditional(request, reply, bucket, credential)
        return self._respond(request, reply, bucket)

    def _record(self, request: Request, body: bytes) -> str:
        root = request.scope.get("root_path", "")
        path = request.url.path
        if root and path.startswith(root):
            path = path[len(root) :]
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = headers["authorization"].split(" ", 1)[0] + " <redacted>"
        entry = RecordedRequest(request.method, path, request.url.query, headers, body)
        with self._lock:
            self.requests.append(entry)
        return path

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_prefix is None or path.startswith(fault.path_prefix):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _authenticate(self, request: Request, auth: AuthKind, now: float) -> Credential | Reply:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        value = value.strip()
        if not value:
            return error_reply(401, "Requires authentication")
        if auth == "jwt":
            if scheme.lower() != "bearer":
                return error_reply(401, JWT_DECODE_ERROR)
            problem = check_app_jwt(
                value, self.public_key_pem, now, (str(self.app_id), self.client_id)
            )
            return error_reply(401, problem) if problem else Credential("jwt", "app")
        if scheme.lower() not in ("token", "bearer"):
            return error_reply(401)
        with self._lock:
            issued = self.tokens.get(value)
        if issued is None or issued.revoked or now >= issued.expires_at:
            return error_reply(401)
        return Credential("token", value, issued.installation_id)

    def _bucket(self, key: str, limit: int, now: float, resource: str = "core") -> Bucket:
        bucket = self._buckets.get((key, resource))
        if bucket is None or now >= bucket.reset:
            window = 60 if resource == "search" else RATE_WINDOW
            bucket = Bucket(limit, int(now) + window, resource=resource)
            self._buckets[(key, resource)] = bucket
        return bucket

    def _peek(self, key: str, limit: int) -> Bucket:
        with self._lock:
            return self._bucket(key, limit, self.clock())

    def _primary_reply(self, request: Request, credential: Credential) -> Reply:
        installation = credential.installation_id or request.path_params.get("installation_id")
        who = f"installation ID {installation}" if installation else f"app ID {self.app_id}"
        return error_reply(403, f"API rate limit exceeded for {who}.", RATE_DOCS)

    def _secondary_reply(self, retry_after: int | None) -> Reply:
        reply = error_reply(403, SECONDARY_MESSAGE.format(request_id=request_id()), RATE_DOCS)
        if retry_after is not None:
            reply.headers["retry-after"] = str(retry_after)
        return reply

    def _respond(self, request: Request, reply: Reply, bucket: Bucket) -> Response:
        now = self.clock()
        with self._lock:
            exhausted = self._exhausted_until is not None and now < self._exhausted_until
            remaining = 0 if exhausted else max(0, bucket.limit - bucket.used)
            reset = self._exhausted_until if exhausted and self._exhausted_until else bucket.reset
        headers = {
            "x-ratelimit-limit": str(bucket.limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(bucket.limit - remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": bucket.resource,
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": request.headers.get(
                "x-github-api-version", "2022-11-28"
            ),
            "x-github-request-id": request_id(),
        }
        headers.update(reply.headers)
        if reply.status in (204, 304) or reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        content = json.dumps(public(reply.body))
        return Response(content, reply.status, headers, "application/json; charset=utf-8")
