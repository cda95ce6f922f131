"""The fault suite's checks fail when they should: each on made-up evidence, no processes.

Not marked ``faults``: these take milliseconds and guard the checker itself.
"""

from __future__ import annotations

from pathlib import Path

from .invariants import (
    BROKER_OUTAGE,
    STORE_OUTAGE,
    journal_violations,
    log_violations,
    lost_outcome_writes,
    read_journal,
    tracebacks,
)

OVERLAP = "overlapping executions of one run"
RERUN = "runs executed again although their outcome was not lost"
NEVER_ENDED = "executions that never ended (and whose process was not killed)"
TRACEBACKS = "tracebacks in the logs that the injected fault does not explain"


def _violations(
    tmp_path: Path, lines: list[str], killed: dict[int, float], lost: dict[str, int] | None = None
) -> dict[str, list[str]]:
    path = tmp_path / "journal"
    path.write_text("".join(f"{line}\n" for line in lines))
    found = journal_violations(read_journal(path, killed), lost or {})
    return {kind: items for kind, items in found.items() if items}


def test_one_execution_per_run_is_fine(tmp_path: Path) -> None:
    lines = ["start r1 10/1 1.0", "start r2 10/2 1.1", "end r1 10/1 2.0", "end r2 10/2 2.1"]
    assert _violations(tmp_path, lines, {}) == {}


def test_two_executions_at_once_overlap(tmp_path: Path) -> None:
    lines = ["start r1 10/1 1.0", "start r1 11/1 1.5", "end r1 10/1 2.0", "end r1 11/1 2.5"]
    found = _violations(tmp_path, lines, {}, {"r1": 1})
    assert list(found) == [OVERLAP]


def test_a_second_execution_needs_a_lost_outcome(tmp_path: Path) -> None:
    lines = ["start r1 10/1 1.0", "end r1 10/1 2.0", "start r1 11/1 15.0", "end r1 11/1 16.0"]
    assert list(_violations(tmp_path, lines, {})) == [RERUN]
    assert _violations(tmp_path, lines, {}, {"r1": 1}) == {}
    three = [*lines, "start r1 12/1 30.0", "end r1 12/1 31.0"]
    assert list(_violations(tmp_path, three, {}, {"r1": 1})) == [RERUN]


def test_an_execution_killed_mid_run_ends_at_the_kill(tmp_path: Path) -> None:
    killed = {10: 5.0}
    after = ["start r1 10/1 1.0", "start r1 11/1 12.0", "end r1 11/1 13.0"]
    assert _violations(tmp_path, after, killed) == {}
    before_the_kill = ["start r1 10/1 1.0", "start r1 11/1 4.0", "end r1 11/1 5.5"]
    assert list(_violations(tmp_path, before_the_kill, killed)) == [OVERLAP]


def test_an_execution_that_never_ended_without_a_kill(tmp_path: Path) -> None:
    lines = ["start r1 10/1 1.0", "start r1 11/1 12.0", "end r1 11/1 13.0"]
    assert set(_violations(tmp_path, lines, {})) == {NEVER_ENDED, OVERLAP}


def test_returned_just_before_a_kill_may_run_again(tmp_path: Path) -> None:
    lines = ["start r1 10/1 1.0", "end r1 10/1 2.0", "start r1 11/1 15.0", "end r1 11/1 16.0"]
    assert _violations(tmp_path, lines, {10: 2.5}) == {}
    assert list(_violations(tmp_path, lines, {10: 9.0})) == [RERUN]


def test_only_outcome_writes_count_as_lost() -> None:
    log = (
        "ERROR Could not record success of run r1: the store was unavailable for 30 s "
        "(12 tries); the sweeper will run it again\n"
        "ERROR Could not record the claim of run r2: the store was unavailable for 30 s "
        "(12 tries); the sweeper will run it again\n"
    )
    assert lost_outcome_writes([log]) == {"r1": 1}


CLIENT_DISCONNECT = """\
ERROR:    Exception in ASGI application
Traceback (most recent call last):
  File "starlette/requests.py", line 252, in stream
    raise ClientDisconnect()
starlette.requests.ClientDisconnect
"""

SWEEP_REFUSED = """\
2026-01-01 celery.beat ERROR Message Error: Couldn't apply scheduled task
Traceback (most recent call last):
  File "redis/connection.py", line 1, in connect
    sock.connect(address)
ConnectionRefusedError: [Errno 111] Connection refused

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "kombu/connection.py", line 539, in _reraise_as_library_errors
    raise ConnectionError(str(exc)) from exc
kombu.exceptions.OperationalError: Error 111 connecting to 127.0.0.1:1. Connection refused.

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "celery/beat.py", line 1, in apply_entry
    raise SchedulingError(...)
celery.beat.SchedulingError: Couldn't apply scheduled task ghapp-celery-sweep: Error 111
"""

SWEEP_BUG = SWEEP_REFUSED.replace(
    "kombu.exceptions.OperationalError: Error", "AttributeError: 'NoneType' has no 'hostname'"
).replace("ConnectionRefusedError: [Errno 111]", "KeyError: [Errno 111]")


def test_tracebacks_are_read_as_chains(tmp_path: Path) -> None:
    log = tmp_path / "beat.log"
    found = tracebacks(log, "noise\n" + SWEEP_REFUSED + "after\n" + CLIENT_DISCONNECT)
    assert [tb.chain for tb in found] == [
        [
            "ConnectionRefusedError",
            "kombu.exceptions.OperationalError",
            "celery.beat.SchedulingError",
        ],
        ["starlette.requests.ClientDisconnect"],
    ]
    assert found[0].explained_by(BROKER_OUTAGE)
    assert not found[0].explained_by(STORE_OUTAGE)
    assert not found[1].explained_by(BROKER_OUTAGE + STORE_OUTAGE)


def test_a_wrapper_is_explained_only_by_what_it_wraps(tmp_path: Path) -> None:
    (bug,) = tracebacks(tmp_path / "beat.log", SWEEP_BUG)
    assert bug.exception == "celery.beat.SchedulingError"
    assert not bug.explained_by(BROKER_OUTAGE)


def test_logs_are_searched_for_tracebacks_input_and_parameters(tmp_path: Path) -> None:
    logs = {
        tmp_path / "web1.log": CLIENT_DISCONNECT + "INFO refused delivery unauthmark123-x\n",
        tmp_path / "worker.log": "[SQL: INSERT ...]\n[parameters: ('payloadmark9', 1)]\n",
        tmp_path / "beat.log": SWEEP_REFUSED,
    }
    needles = {"unauthmark123": "unauthenticated", "payloadmark9": "payload"}
    found, excerpts = log_violations(logs, needles, BROKER_OUTAGE)
    assert found[TRACEBACKS] == ["web1.log:2: starlette.requests.ClientDisconnect"]
    assert "raise ClientDisconnect()" in excerpts[0]
    assert sorted(item.split(": ")[1] for item in found["logged input"]) == [
        "SQL parameters",
        "payload",
        "unauthenticated",
    ]
    clean, _ = log_violations({tmp_path / "beat.log": SWEEP_REFUSED}, needles, BROKER_OUTAGE)
    assert clean == {TRACEBACKS: [], "logged input": []}
