"""FakeGitHub: a real ASGI app that answers like GitHub's REST and GraphQL APIs, for tests over
loopback.

It checks what GitHub checks (the app JWT's RS256 signature and time claims, installation
tokens and their expiry, the API version header, a User-Agent), answers with GitHub's shapes
and ``x-ratelimit-*`` headers, keeps a budget per credential, and lets a test switch faults on:
``fail_next``, ``exhaust_primary_limit``, ``secondary_limit`` and ``latency``.

Beyond the App endpoints it serves repositories (``add_repo``: issues, comments, labels, pulls,
reviews, checks, statuses, contents, search), the app's webhook deliveries (``add_delivery``) and
GraphQL (``graphql_resolver``). GET answers carry an ``ETag``; a matching ``If-None-Match`` gets
``304 Not Modified``, free of primary rate limit when authorized, as on GitHub. Each credential
has a bucket per resource (``core``, ``search``, ``graphql``) named in ``x-ratelimit-resource``.

Its clock is real time unless a ``FakeClock`` is given: a fake served for an hour keeps
accepting fresh JWTs. Served with ``with fake.serve() as url:`` (uvicorn on 127.0.0.1, a free
port unless ``port=`` names one) or, for GitHub Enterprise Server's layout,
``with fake.serve(prefix="/api/v3") as url:``.

The layers, each importing only those before it: ``_types`` (data) and ``_replies`` / ``_keys``
(pure helpers), ``_state`` (what the fake knows), the endpoint groups (``_app``, ``_repos``,
``_checks``, ``_contents``, ``_deliveries``, ``_graphql``), then this module, the request
pipeline every endpoint is served through. ``_oauth`` installs itself on a FakeGitHub.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ghapp_celery.testing._app import AppEndpoints
from ghapp_celery.testing._checks import CheckEndpoints
from ghapp_celery.testing._contents import ContentEndpoints
from ghapp_celery.testing._deliveries import DeliveryEndpoints
from ghapp_celery.testing._graphql import GraphQLEndpoint, default_resolver
from ghapp_celery.testing._keys import JWT_DECODE_ERROR, check_app_jwt, make_private_key
from ghapp_celery.testing._replies import (
    RATE_DOCS,
    SECONDARY_MESSAGE,
    error_reply,
    public,
    request_id,
)
from ghapp_celery.testing._repos import RepoEndpoints
from ghapp_celery.testing._serve import serve
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import (
    AuthKind,
    Bucket,
    Clock,
    Credential,
    Fault,
    Handler,
    RecordedRequest,
    Reply,
    real_time,
)

__all__ = ["API_VERSIONS", "FakeGitHub"]

API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
RATE_WINDOW = 3600


def resource_of(path: str) -> str:
    """The rate-limit resource a path spends (``x-ratelimit-resource``)."""
    if path == "/graphql" or path.endswith("/api/graphql"):
        return "graphql"
    if path.startswith("/search/"):
        return "search"
    return "core"


class FakeGitHub(FakeState):
    """GitHub's API on loopback; see the module docstring. The state (``repos``, ``tokens``,
    ``installation_ids``, ...) is a FakeState's; this adds routing, auth, limits and faults."""

    def __init__(
        self,
        *,
        app_id: int = 12345,
        private_key_pem: str | None = None,
        clock: Clock | None = None,
        installations: int = 3,
        rate_limit: int = 5000,
        token_ttl: int = 3600,
        token_format: Literal["classic", "stateless"] = "classic",  # noqa: S107  (not a secret)
        latency: float = 0.0,
        client_id: str = "Iv23liFakeClientId",
    ) -> None:
        super().__init__(
            app_id=app_id,
            client_id=client_id,
            private_key_pem=private_key_pem or make_private_key(),
            clock=clock or real_time,
            installations=installations,
            token_ttl=token_ttl,
            token_format=token_format,
            graphql_resolver=default_resolver,
        )
        self.rate_limit = rate_limit
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.base_url: str | None = None
        self.root_url: str | None = None
        self.not_modified = 0  # how many 304s were answered
        self._faults: list[Fault] = []
        self._secondary: list[int | None] = []
        self._exhausted_until: int | None = None
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self.app = Starlette(exception_handlers={HTTPException: self._http_exception})
        self._graphql = GraphQLEndpoint(self)
        groups = (
            AppEndpoints(self),
            RepoEndpoints(self),
            CheckEndpoints(self),
            ContentEndpoints(self),
            DeliveryEndpoints(self),
            self._graphql,
        )
        for group in groups:
            for endpoint in group.endpoints():
                self.add_route(
                    endpoint.path, endpoint.handler, auth=endpoint.auth, methods=endpoint.methods
                )

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
            routes.append(self._route(graphql_path, self._graphql.graphql, "token", ("POST",)))
        return Starlette(routes=routes)

    @contextmanager
    def serve(self, prefix: str = "", *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on ``host`` until the block ends; yield the API base URL (the root URL plus
        ``prefix``). ``port=0`` takes a free port; name one for a process that cannot be told
        the URL (a worker started beforehand, another test runner)."""
        prefix = prefix.rstrip("/")
        with serve(self.asgi(prefix), host=host, port=port) as root:
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

    def requests_to(self, path: str, method: str = "GET") -> list[RecordedRequest]:
        """The recorded requests for one path (below the API root)."""
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def remaining(self, token_or_key: str, resource: str = "core") -> int | None:
        """What ``x-ratelimit-remaining`` would say now for a credential ("app", a token)."""
        with self._lock:
            bucket = self._buckets.get((token_or_key, resource))
        return None if bucket is None else bucket.limit - bucket.used

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

    def _conditional(
        self, request: Request, reply: Reply, bucket: Bucket, credential: Credential
    ) -> Reply:
        """Add an ETag to a GET's 200; answer 304 when ``If-None-Match`` still matches, and then
        give the request back to the budget when it was authorized (GitHub's rule)."""
        if request.method != "GET" or reply.status != 200 or reply.body is None:
            return reply
        digest = hashlib.sha256(json.dumps(public(reply.body), sort_keys=True).encode())
        etag = f'W/"{digest.hexdigest()[:32]}"'
        reply.headers.setdefault("etag", etag)
        wanted = request.headers.get("if-none-match", "")
        if etag not in {v.strip() for v in wanted.split(",")}:
            return reply
        with self._lock:
            self.not_modified += 1
            if credential.key != "anonymous":
                bucket.used -= 1
        return Reply(304, None, {"etag": etag})
