"""Deliveries arriving while a fault happens: signed ones at a steady rate, and bad ones.

:class:`Load` posts a signed ``issues.opened`` delivery every ``1/rate`` seconds from a
pacing thread, each on a thread of its own pool (so a slow answer never delays the next
delivery, as GitHub's deliveries do not wait for each other), one new connection per
delivery. Every ``bad_every``-th tick it also sends an unauthenticated request, in turn:

* ``bad-signature``: a JSON body with a wrong ``X-Hub-Signature-256``;
* ``unsigned``: no signature at all;
* ``too-large``: a declared Content-Length over the 25 MB limit, no body;
* ``truncated``: headers declaring 2,000 bytes, 100 of them sent, then the connection closed
  (a client gone mid-body).

Each answer is recorded (:class:`Answer`): when it was sent, its status, how long it took,
the state the 202 reported for its run, or why there was none. Signed payloads carry
``payload_marker`` and the bad requests ``unauth_marker`` (in the body, the delivery id and
the event header), so the log checks can tell whether either ever reached a log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ghapp_celery.webhooks import signed_request

from .harness import SECRET, unique

PATH = "/webhooks/github/"
CLIENT_TIMEOUT = 30.0  # far past the deadline: a slow answer is measured, not cut short
BAD_KINDS = ("bad-signature", "unsigned", "too-large", "truncated")


@dataclass
class Answer:
    kind: str  # "signed" or one of BAD_KINDS
    delivery_id: str
    sent: float  # wall time (time.time()) the request started
    status: int | None = None  # None: no answer
    latency: float | None = None  # seconds to the answer
    error: str | None = None  # why there was no answer
    run_states: tuple[str, ...] = ()  # what a 202 said of the delivery's runs

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        outcome = f"{self.status}" if self.answered else f"no answer ({self.error})"
        took = f" in {self.latency:.2f} s" if self.latency is not None else ""
        return f"{self.kind} {self.delivery_id} sent at {self.sent:.3f}: {outcome}{took}"


@dataclass
class Load:
    url: str
    rate: float = 5.0
    bad_every: int = 4
    threads: int = 24
    payload_marker: str = field(default_factory=lambda: unique("payloadmark"))
    unauth_marker: str = field(default_factory=lambda: unique("unauthmark"))

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="load")
        self._local = threading.local()
        self._pacer: threading.Thread | None = None
        self._ticks = 0

    # -- running ------------------------------------------------------------------------

    def start(self) -> Load:
        self._pacer = threading.Thread(target=self._pace, name="load-pacer", daemon=True)
        self._pacer.start()
        return self

    def stop(self) -> list[Answer]:
        """Stop sending and wait for every request in flight; returns all answers."""
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join(10)
        self._pool.shutdown(wait=True)
        return self.snapshot()

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _pace(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._ticks += 1
            self._pool.submit(self.send_signed)
            if self._ticks % self.bad_every == 0:
                kind = BAD_KINDS[(self._ticks // self.bad_every) % len(BAD_KINDS)]
                self._pool.submit(self.send_bad, kind)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def burst(self, n: int) -> None:
        """``n`` signed deliveries at once (from the pool)."""
        for _ in range(n):
            self._pool.submit(self.send_signed)

    # -- requests -----------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            # No keep-alive: one connection per delivery, as GitHub sends them, and no
            # pooled connection to a killed server to trip over.
            client = httpx.Client(
                timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)
            )
            self._local.client = client
        return client

    def signed_body(self, delivery_id: str) -> tuple[bytes, dict[str, str]]:
        payload = {
            "action": "opened",
            "issue": {"number": 1, "title": f"{self.payload_marker} title", "body": "x" * 200},
            "repository": {"full_name": "octo/faults", "id": 1},
            "sender": {"login": self.payload_marker},
            "installation": {"id": 77},
        }
        return signed_request("issues", payload, secret=SECRET, delivery_id=delivery_id)

    def _record(self, answer: Answer) -> Answer:
        with self._lock:
            self.answers.append(answer)
        return answer

    def send_signed(self) -> Answer:
        delivery_id = str(uuid.uuid4())
        body, headers = self.signed_body(delivery_id)
        return self._post("signed", delivery_id, body, headers)

    def _post(self, kind: str, delivery_id: str, body: bytes, headers: dict[str, str]) -> Answer:
        # Recorded before it is sent, so a snapshot shows the requests in flight too.
        answer = self._record(Answer(kind, delivery_id, time.time()))
        started = time.monotonic()
        try:
            response = self._client().post(f"{self.url}{PATH}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            answer.error = type(exc).__name__
            return answer
        answer.latency = time.monotonic() - started
        answer.status = response.status_code
        if response.status_code == 202:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                answer.run_states = tuple(run["state"] for run in response.json()["runs"])
        return answer

    def send_bad(self, kind: str) -> Answer:
        delivery_id = f"{self.unauth_marker}-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"action": "opened", "marker": self.unauth_marker}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": f"issues{self.unauth_marker}",
            "X-GitHub-Delivery": delivery_id,
        }
        if kind == "bad-signature":
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
            return self._post(kind, delivery_id, body, headers)
        if kind == "unsigned":
            return self._post(kind, delivery_id, body, headers)
        if kind == "too-large":
            return self._raw(kind, delivery_id, headers, 26 * 1024 * 1024, b"")
        if kind == "truncated":
            return self._raw(kind, delivery_id, headers, 2000, body[:100])
        raise ValueError(kind)

    def _raw(
        self, kind: str, delivery_id: str, headers: dict[str, str], declared: int, body: bytes
    ) -> Answer:
        """A hand-written request declaring ``declared`` bytes and sending ``body``; waits for
        an answer unless the body is short (then it hangs up, as a client gone mid-body)."""
        answer = self._record(Answer(kind, delivery_id, time.time()))
        lines = [f"POST {PATH} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {declared}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        started = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=CLIENT_TIMEOUT) as sock:
                sock.sendall(request)
                if len(body) < declared and declared <= 2000:
                    time.sleep(0.05)
                    answer.error = "hung up mid-body"
                    return answer
                status_line = sock.makefile("rb").readline().decode("latin-1")
        except OSError as exc:
            answer.error = type(exc).__name__
            return answer
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            answer.error = f"no status line ({status_line!r})"
            return answer
        answer.latency = time.monotonic() - started
        answer.status = int(parts[1])
        return answer

    def partial_signed(self) -> socket.socket:
        """Start a signed delivery and send only half its body; the caller closes it. For a
        request certainly in flight when the web process is killed."""
        delivery_id = str(uuid.uuid4())
        body, headers = self.signed_body(delivery_id)
        lines = [f"POST {PATH} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        sock = socket.create_connection((self.host, self.port), timeout=CLIENT_TIMEOUT)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[: len(body) // 2])
        self._record(Answer("signed", delivery_id, time.time(), error="cut mid-body by the test"))
        return sock
