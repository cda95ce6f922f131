"""uvicorn's access log never records the OAuth callback's ``code`` and ``state`` (or a token).

uvicorn logs each request's path with its query string. Driven as users run the app: ``python
-m uvicorn module:app`` in a subprocess with uvicorn's default logging (ghapp_celery installs
the filter when it mounts the OAuth routes), the same with a user's own ``--log-config`` using
the documented filter, and a whole login through FakeGitHub with the access log on.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from uvicorn.config import LOGGING_CONFIG

from ghapp_celery.logging_filters import REDACTED, RedactOAuthQuery, redact_query
from tests.test_oauth_harness import PREFIX, free_port, make_env

ROOT = Path(__file__).resolve().parent.parent
CODE = "c0de-M4RKER-5e1f"
STATE = "st4te-M4RKER-77aa"
TOKEN = "t0ken-M4RKER-0b3c"
MARKERS = (CODE, STATE, TOKEN)


@contextmanager
def uvicorn_process(
    tmp_path: Path, target: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """``python -m uvicorn target`` on a free port; yields (its URL, its stdout+stderr file)."""
    port = free_port()
    output = tmp_path / "uvicorn.log"
    environment = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "GITHUBAPP_DATA_DIR": str(tmp_path / "data"),
        "GITHUBAPP_DATABASE_URL": f"sqlite:///{tmp_path}/store.sqlite",
        **(env or {}),
    }
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port), *extra],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"uvicorn exited: {output.read_text()}")
            try:
                httpx.get(f"{url}/ready-probe", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"uvicorn did not start: {output.read_text()}") from None
                time.sleep(0.1)
        yield url, output
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def access_lines(output: Path, needle: str) -> list[str]:
    return [line for line in output.read_text().splitlines() if needle in line]


OAUTH_ENV = {
    "GITHUBAPP_OAUTH_CLIENT_ID": "Iv23liAccessLogTest",
    "GITHUBAPP_OAUTH_CLIENT_SECRET": "access-log-client-secret",
    "GITHUBAPP_OAUTH_SESSION_SECRET": "access-log-session-secret-0123456789abcdef",
    "GITHUBAPP_OAUTH_REDIRECT_URI": "http://127.0.0.1/auth/github/callback",
    "GITHUBAPP_OAUTH_COOKIE_SECURE": "false",
}


def test_uvicorn_with_its_default_logging_redacts_the_callback(tmp_path: Path) -> None:
    with uvicorn_process(tmp_path, "tests.accesslogapp:app", env=OAUTH_ENV) as (url, output):
        callback = f"{url}{PREFIX}/callback"
        answers = [
            httpx.get(callback, params={"code": CODE, "state": STATE}),
            httpx.get(f"{callback}?state={STATE}&redirect_to=/next&code={CODE}"),
            httpx.get(f"{callback}?cod%65={CODE}&STATE={STATE}"),  # as the app decodes it
            httpx.get(f"{url}/elsewhere?access_token={TOKEN}&page=2"),
            httpx.get(f"{url}{PREFIX}/login"),
        ]
        assert [a.status_code for a in answers] == [400, 400, 400, 404, 200]
        time.sleep(0.3)  # the last line reaches the file
    text = output.read_text()
    lines = access_lines(output, "/callback")
    assert len(lines) == 3, text
    assert f"/callback?code={REDACTED}&state={REDACTED} HTTP/1.1" in lines[0]
    assert f"?state={REDACTED}&redirect_to=/next&code={REDACTED} HTTP/1.1" in lines[1]
    assert f"?cod%65={REDACTED}&STATE={REDACTED} HTTP/1.1" in lines[2]
    assert all('" 400' in line for line in lines)
    (elsewhere,) = access_lines(output, "/elsewhere")
    assert f"/elsewhere?access_token={REDACTED}&page=2 HTTP/1.1" in elsewhere
    assert access_lines(output, f"{PREFIX}/login HTTP/1.1")  # untouched lines still logged
    for marker in MARKERS:
        assert marker not in text


def test_a_users_log_config_with_the_documented_filter(tmp_path: Path) -> None:
    # An app that is not a GitHubApp at all: the filter from docs/oauth.md, in a dictConfig file.
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "ghapp_celery.logging_filters.RedactOAuthQuery"}}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact"]
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    with uvicorn_process(tmp_path, "tests.accesslogapp:plain", "--log-config", str(path)) as (
        url,
        output,
    ):
        assert httpx.get(f"{url}/hello?code={CODE}&token={TOKEN}&x=1").status_code == 200
        time.sleep(0.3)
    (line,) = access_lines(output, "/hello")
    assert f"/hello?code={REDACTED}&token={REDACTED}&x=1 HTTP/1.1" in line
    assert CODE not in output.read_text() and TOKEN not in output.read_text()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_real_login_leaves_no_code_in_the_access_log(tmp_path: Path) -> None:
    with make_env(tmp_path, access_log=True) as env:
        collect = Collect()
        access = logging.getLogger("uvicorn.access")
        access.addHandler(collect)
        try:
            state, auth_url = env.start()
            callback = env.authorize(auth_url)
            code = callback.params["code"]
            answer = env.browser.get(str(callback))
            assert answer.status_code == 200, answer.text
            session = answer.json()["session_token"]
            assert env.get(f"{PREFIX}/user").status_code == 200
        finally:
            access.removeHandler(collect)
    text = "\n".join(collect.lines)
    assert f"{PREFIX}/callback?state={REDACTED}&code={REDACTED} HTTP" in text, (
        text
    )  # FakeGitHub's order
    assert f"{PREFIX}/user" in text
    for secret in (code, state, session):
        assert secret not in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/p", "/p"),
        ("/p?", "/p?"),
        ("/p?code", "/p?code"),  # no value to hide
        ("/p?code=", f"/p?code={REDACTED}"),
        ("/p?x=1&code=a&y=2", f"/p?x=1&code={REDACTED}&y=2"),
        ("/p?x=code&codes=a", "/p?x=code&codes=a"),  # names, not substrings
        ("/p?Access_Token=a", f"/p?Access_Token={REDACTED}"),
        ("/p?code+=a", f"/p?code+={REDACTED}"),  # "code " after decoding, stripped
        ('GET /p?state=a&b=c HTTP/1.1" 200', f'GET /p?state={REDACTED}&b=c HTTP/1.1" 200'),
        ("at https://h/cb?code=a#f, /x?token=b",
         f"at https://h/cb?code={REDACTED}#f, /x?token={REDACTED}"),
    ],
)  # fmt: skip
def test_redact_query(text: str, expected: str) -> None:
    assert redact_query(text) == expected


def test_the_filter_keeps_records_and_their_shape() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/cb?code={CODE}", "1.1", 200), None,
    )  # fmt: skip
    assert RedactOAuthQuery().filter(record) is True
    assert record.args == ("127.0.0.1:1", "GET", f"/cb?code={REDACTED}", "1.1", 200)
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, f"GET /cb?state={STATE}", None, None)
    RedactOAuthQuery().filter(plain)
    assert plain.getMessage() == f"GET /cb?state={REDACTED}"
    custom = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("/cb?code=a&k=b",), None)
    RedactOAuthQuery(names=["k"]).filter(custom)
    assert custom.getMessage() == f"/cb?code=a&k={REDACTED}"
