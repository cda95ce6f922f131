"""What must hold after a fault, checked from the outside (issue 10, section 2).

:func:`check` reads what the processes left behind (the store through DeliveryStore, the
handler's journal, every process's log, the answers the load got) and returns one line per
violation of:

1. every delivery answered 2xx is in the store, with its run;
2. every run in the store ends succeeded, and succeeded only after an execution that
   returned (the journal has its end);
3. no run's handler was executing twice at the same moment: a run's executions, as journaled
   ``[start, end]``, never overlap; a start without an end is an execution killed with its
   process, and ends when the harness saw that process dead (one that was not killed is a
   violation of its own: an execution that never ended);
4. a run executes again only when its previous execution was cut short: killed, or killed
   within ``KILL_GRACE`` of returning (before its outcome could be written), or its outcome
   write failed past the bounded retry (the worker's "Could not record ... of run <id>"
   error, one per re-execution); and since no fault injected lasts as long as that retry
   (GITHUBAPP_OUTCOME_WRITE_TIMEOUT), no outcome write may have failed past it at all;
5. no answer took longer than the deadline (plus a margin for the round trip), and every
   request got an answer except while the web process was down (and the ``truncated`` bad
   requests, which hang up before one can come);
6. answers say what happened: 202 or 503 to a signed delivery, 401 or 413 to a bad one;
7. no log holds a traceback other than of the outage the test injected (``allowed``), nor
   an SQL parameter dump, nor any byte of the signed payloads or of the bad requests;
8. no process the test did not kill exited.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ghapp_celery.store import DeliveryStore, RunState, StoreUnavailable

from .harness import DEADLINE, MARGIN, OUTCOME_WRITE_TIMEOUT, Deployment
from .load import Answer, Load

#: An execution that returned this little before its process was killed may have lost its
#: outcome to the kill (the write takes milliseconds); then running it again is expected.
KILL_GRACE = 1.0

#: Exceptions an outage of each component shows in a traceback (the last line of a block).
STORE_OUTAGE = (
    "ghapp_celery.exceptions.StoreUnavailable",  # defined there since issue 11 (one tree)
    "sqlalchemy.exc.OperationalError",
    "sqlalchemy.exc.InterfaceError",
    "psycopg.OperationalError",
    "psycopg.errors.AdminShutdown",
    "psycopg.errors.CannotConnectNow",
    "sqlite3.OperationalError",
)
BROKER_OUTAGE = (
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
    "kombu.exceptions.OperationalError",
    "amqp.exceptions.RecoverableConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "BrokenPipeError",
    "ConnectionError",
    "OSError",
)

#: Exceptions that only wrap another: explained when what they wrap is.
WRAPPERS = ("celery.beat.SchedulingError", "kombu.exceptions.BatchPublishError")

# The worker's error when an outcome write (not the claim) failed past the bounded retry.
_OUTCOME_LOST = re.compile(
    r"Could not record (?!the claim )(?:.+?) of run (\S+): the store was unavailable"
)
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_SQL_PARAMETERS = "[parameters:"


@dataclass
class Execution:
    run_id: str
    executor: str  # "<pid>/<thread id>"
    start: float
    end: float | None  # None: never journaled its end
    killed_at: float | None = None  # its process was SIGKILLed (dead at that time)

    @property
    def pid(self) -> int:
        return int(self.executor.split("/", 1)[0])

    @property
    def until(self) -> float | None:
        """When it stopped executing: its end, or its process's death."""
        return self.end if self.end is not None else self.killed_at


def read_journal(path: Path, killed: dict[int, float]) -> dict[str, list[Execution]]:
    """Each run's executions, by start time."""
    runs: dict[str, list[Execution]] = defaultdict(list)
    open_by: dict[tuple[str, str], Execution] = {}
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        kind, run_id, executor, when = line.split()
        if kind == "start":
            execution = Execution(run_id, executor, float(when), None)
            open_by[(run_id, executor)] = execution
            runs[run_id].append(execution)
        else:
            open_by.pop((run_id, executor)).end = float(when)
    for executions in runs.values():
        for execution in executions:
            execution.killed_at = killed.get(execution.pid)
        executions.sort(key=lambda e: e.start)
    return dict(runs)


@dataclass
class Traceback:
    """One logged exception: a chain of traceback blocks (``__context__``/``__cause__``)."""

    log: Path
    line: int  # 1-based, of the first "Traceback" header
    chain: list[str]  # each block's exception class, innermost first; the last was logged
    text: str  # the log record's line and the whole chain

    @property
    def exception(self) -> str:
        return self.chain[-1]

    def explained_by(self, allowed: Sequence[str]) -> bool:
        """The logged exception is one of ``allowed``, or wraps one of them."""
        if self.exception in allowed:
            return True
        return self.exception in WRAPPERS and any(name in allowed for name in self.chain[:-1])


_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def _exception_block(lines: list[str], i: int) -> tuple[str, int]:
    """Skip a block's frames from its header at ``i``; its exception class and the index
    of its exception line."""
    i += 1
    while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i]):
        i += 1
    exception_line = lines[i] if i < len(lines) else ""
    match = _EXCEPTION_LINE.match(exception_line)
    return (match.group(1) if match else exception_line), i


def tracebacks(log: Path, text: str | None = None) -> list[Traceback]:
    """Every logged exception in a log (its ``text``, read when not given), with the classes
    of its chain."""
    lines = (log.read_text(errors="replace") if text is None else text).splitlines()
    found = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        start = i
        chain = []
        while True:
            name, i = _exception_block(lines, i)
            chain.append(name)
            # A chained block follows: blank, the separator, blank, its header.
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and lines[j] in _CHAINED:
                j += 1
                while j < len(lines) and not lines[j].strip():
                    j += 1
                if j < len(lines) and lines[j].startswith("Traceback (most recent call last):"):
                    i = j
                    continue
            break
        # The log record the traceback belongs to is the line before it.
        text = "\n".join(lines[max(0, start - 1) : i + 1])
        found.append(Traceback(log, start + 1, chain, text))
        i += 1
    return found


def _all_runs(store: DeliveryStore) -> dict[str, tuple[str, RunState, int, str | None]]:
    """run id -> (delivery id, state, attempts, last error), every run in the store."""
    runs = {}
    cursor: str | None = None
    while True:
        page = store.list_deliveries(limit=500, cursor=cursor)
        for delivery in page.items:
            for run in delivery.runs:
                runs[run.id] = (delivery.id, run.state, run.attempts, run.last_error)
        cursor = page.next_cursor
        if cursor is None:
            return runs


@dataclass
class Report:
    """The checks' findings; ``violations`` empty means every invariant held."""

    violations: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    excerpts: list[str] = field(default_factory=list)

    def add(self, kind: str, items: Sequence[str], limit: int = 8) -> None:
        if items:
            shown = "\n    ".join(items[:limit])
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            self.violations.append(f"{kind} ({len(items)}):\n    {shown}{more}")

    def assert_held(self) -> None:
        """Fail the test with the whole report when any invariant was violated."""
        __tracebackhide__ = True
        if self.violations:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.facts.items())
        body = "\n".join(f"- {v}" for v in self.violations) or "- none"
        excerpts = "\n\n".join(self.excerpts)
        return f"facts: {facts}\nviolations:\n{body}" + (
            f"\n\nlog excerpts:\n{excerpts}" if excerpts else ""
        )


def lost_outcome_writes(texts: Iterable[str]) -> Counter[str]:
    """Per run id, how many times a worker logged that recording a finished run's outcome
    failed past the bounded retry (a failed claim does not count: nothing ran)."""
    return Counter(m.group(1) for text in texts for m in _OUTCOME_LOST.finditer(text))


def journal_violations(
    journal: dict[str, list[Execution]], lost_outcomes: Mapping[str, int]
) -> dict[str, list[str]]:
    """Checks 3 and 4 on a journal (``read_journal``); ``lost_outcomes``: per run id, how
    many times a worker logged that its outcome write failed past the retry."""
    never_ended, overlaps, reruns = [], [], []
    for run_id, executions in journal.items():
        for e in executions:
            if e.end is None and e.killed_at is None:
                never_ended.append(f"run {run_id} started at {e.start:.3f} in {e.executor}")
        for before, after in itertools.pairwise(executions):
            until = before.until
            if until is None or after.start < until:
                overlaps.append(
                    f"run {run_id}: {before.executor} [{before.start:.3f}, {until}] and "
                    f"{after.executor} from {after.start:.3f}"
                )
        excused = lost_outcomes.get(run_id, 0)
        for e in executions[:-1]:
            if e.end is None:
                continue  # killed mid-run: running it again is the point
            if e.killed_at is not None and e.killed_at - e.end <= KILL_GRACE:
                continue  # killed before its outcome was written
            if excused:
                excused -= 1
                continue
            reruns.append(
                f"run {run_id}: returned at {e.end:.3f} in {e.executor}, executed "
                f"{len(executions)} times, no kill and no lost outcome write explains it"
            )
    return {
        "executions that never ended (and whose process was not killed)": never_ended,
        "overlapping executions of one run": overlaps,
        "runs executed again although their outcome was not lost": reruns,
    }


def log_violations(
    logs: Mapping[Path, str], needles: Mapping[str, str], allowed: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Check 7 on the logs' texts: the violations by kind, and excerpts of the first two
    unexplained tracebacks. ``needles``: input that must never be logged, and what it is."""
    bad_tracebacks = [
        tb
        for path, text in logs.items()
        for tb in tracebacks(path, text)
        if not tb.explained_by(allowed)
    ]
    excerpts = []
    for tb in bad_tracebacks[:2]:
        lines = tb.text.splitlines()
        shown = lines if len(lines) <= 16 else [*lines[:2], "  ...", *lines[-12:]]
        excerpts.append(f"{tb.log.name}:{tb.line}\n" + "\n".join(shown))
    leaks = []
    searched = {**needles, _SQL_PARAMETERS: "SQL parameters"}
    for path, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            for needle, what in searched.items():
                if needle in line:
                    leaks.append(f"{path.name}:{number}: {what}: {line[:300]}")
    return {
        "tracebacks in the logs that the injected fault does not explain": [
            f"{tb.log.name}:{tb.line}: {' <- '.join(reversed(tb.chain))}" for tb in bad_tracebacks
        ],
        "logged input": leaks,
    }, excerpts


def check(
    deploy: Deployment,
    load: Load,
    *,
    allowed: Iterable[str] = (),
    web_down: Sequence[tuple[float, float]] = (),
    unexpected_exits: Sequence[str] = (),
) -> Report:
    """Run every check after the deployment was stopped; see the module docstring.

    ``allowed``: exception classes the injected outage may show in a traceback.
    ``web_down``: wall-time windows when the web process was down or being killed; a
    request sent in one may go unanswered.
    """
    report = Report()
    answers = load.snapshot()
    killed = deploy.killed_pids()
    journal = read_journal(deploy.journal, killed)
    logs = {path: path.read_text(errors="replace") for path in deploy.log_files()}
    lost_outcomes = lost_outcome_writes(logs.values())
    signed = [a for a in answers if a.kind == "signed"]
    report.facts.update(
        signed=len(signed),
        answered_2xx=sum(a.ok for a in signed),
        answered_503=sum(a.status == 503 for a in signed),
        unanswered=sum(not a.answered for a in answers),
        bad=len(answers) - len(signed),
        executions=sum(len(e) for e in journal.values()),
        kills=len(deploy.kills),
        outcome_writes_lost=sum(lost_outcomes.values()),
    )

    # 1 and 2: the store.
    try:
        stored = _all_runs(deploy.store)
        missing = []
        for answer in signed:
            if answer.ok:
                record = deploy.store.get_delivery(answer.delivery_id, with_payload=False)
                if record is None:
                    missing.append(f"{answer.describe()}: no delivery")
                elif len(record.runs) != 1:
                    missing.append(f"{answer.describe()}: {len(record.runs)} runs")
        report.add("answered 2xx but not in the store", missing)
    except StoreUnavailable as exc:
        report.add("store unreadable after the test", [repr(exc)])
        stored = {}
    report.facts["runs"] = len(stored)
    report.add(
        "runs that did not end succeeded",
        [
            f"run {run_id} of {delivery}: {state.value}, attempts {attempts}, error {error!r}"
            for run_id, (delivery, state, attempts, error) in stored.items()
            if state is not RunState.SUCCEEDED
        ],
    )
    report.add(
        "runs succeeded without an execution that returned",
        [
            f"run {run_id}: executions {[(e.start, e.end) for e in journal.get(run_id, [])]}"
            for run_id, (_, state, _, _) in stored.items()
            if state is RunState.SUCCEEDED
            and not any(e.end is not None for e in journal.get(run_id, []))
        ],
    )
    report.add(
        "journaled runs the store does not know",
        [run_id for run_id in journal if run_id not in stored] if stored else [],
    )

    # 3 and 4: the journal. No fault here lasts as long as the outcome writes' retry, so
    # none may have failed past it (each would excuse a re-execution).
    report.add(
        f"outcome writes failed past the retry ({OUTCOME_WRITE_TIMEOUT:.0f} s), longer than "
        "any outage injected",
        [f"run {run_id}: {n}" for run_id, n in lost_outcomes.items()],
    )
    for kind, items in journal_violations(journal, lost_outcomes).items():
        report.add(kind, items)

    # 5 and 6: the answers.
    bound = DEADLINE + MARGIN
    report.facts["max_latency"] = (
        round(max((a.latency or 0.0) for a in answers), 3) if answers else 0
    )
    report.add(
        f"answers slower than the deadline ({DEADLINE} s + {MARGIN} s)",
        [a.describe() for a in answers if a.latency is not None and a.latency > bound],
    )

    def excused_silence(answer: Answer) -> bool:
        if answer.kind == "truncated" or answer.error == "cut mid-body by the test":
            return True
        return any(start - bound <= answer.sent <= end for start, end in web_down)

    report.add(
        "requests without an answer",
        [a.describe() for a in answers if not a.answered and not excused_silence(a)],
    )
    expected_status = {"signed": {202, 503}, "bad-signature": {401}, "unsigned": {401},
                       "too-large": {413}}  # fmt: skip
    report.add(
        "answers with an unexpected status",
        [
            a.describe()
            for a in answers
            if a.answered and a.status not in expected_status.get(a.kind, set())
        ],
    )

    # 7: the logs.
    needles = {
        load.payload_marker: "signed payload bytes",
        load.unauth_marker: "bytes of an unauthenticated request",
    }
    kinds, report.excerpts = log_violations(logs, needles, tuple(allowed))
    for kind, items in kinds.items():
        report.add(kind, items)

    # 8: the processes.
    report.add("processes that exited on their own", list(unexpected_exits))
    return report
