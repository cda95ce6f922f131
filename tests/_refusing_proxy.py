"""A loopback TCP proxy that resets the first connection carrying a given request line.

It stands in front of a server (FakeGitHub) and copies bytes both ways; the first time the
client's bytes hold ``refuse`` (say ``b"POST /app/installations/7/access_tokens "``), it
drops them and resets the connection (``SO_LINGER`` 0, so the client reads an RST before any
answer): a network failure at the socket, which no ASGI app can produce. Later connections,
and later requests with that line, pass through::

    with RefusingProxy(fake.base_url, b"POST /app/installations/1/access_tokens ") as proxy:
        ...  # point the app at proxy.url
        assert proxy.refused == 1
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["RefusingProxy"]

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class RefusingProxy:
    """See the module docstring. ``refused`` counts the connections reset so far."""

    def __init__(self, upstream: str, refuse: bytes, times: int = 1) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._path = parts.path.rstrip("/")
        self._refuse = refuse
        self._left = times
        self._lock = threading.Lock()
        self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{self._path}"

    def __enter__(self) -> RefusingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self._upstream)
            self._spawn(self._client_to_server, client, upstream)
            self._spawn(self._copy, upstream, client)

    def _should_refuse(self, seen: bytes) -> bool:
        with self._lock:
            if self._left > 0 and self._refuse in seen:
                self._left -= 1
                self.refused += 1
                return True
        return False

    def _client_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        tail = b""
        try:
            while chunk := client.recv(_CHUNK):
                # The line may straddle two reads: look at the end of the last one too.
                if self._should_refuse(tail + chunk):
                    _reset(client)
                    _reset(upstream)
                    return
                tail = chunk[-len(self._refuse) :]
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            # This side owns the pair: the copy the other way ends when they close.
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
