"""Delivery of the alert log to one sink: in log order, several requests in flight, at least once.

A sink whose protocol takes batches (Loki push, OTLP logs) gets everything waiting in one
request, one request at a time. The others (HTTP JSON, GELF, falcosidekick) get one alert per
request; while the sink answers quickly that is one request at a time, in order, and when its
answers take longer (a distant sink) up to `MAX_IN_FLIGHT` requests go out at once, each on its
own kept-alive connection, so the rate no longer falls with the round trip. Either way the
checkpoint only moves over a contiguous prefix of the log that the sink acknowledged (or that
was dropped, and counted): a failure waits for the requests in flight, backs off, and resumes
from there, leaving out what the sink already acknowledged beyond it.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and full jitter
(stretched to a Retry-After); other 4xx refuse the alert (dropped, counted; a refused batch is
sent again one alert per request, so only the alerts the sink refuses are dropped). Each alert
is therefore delivered once in normal operation and at least once across kills and lost
answers. Stopping never waits long on a sink: requests in flight get a short grace, then are
cut off.

Each line of the log is sent, dropped, or, with a fold window, folded into the summary of its
repeats (`falco_forwarder.folding`), which goes out when the window closes. The fold state moves
with the checkpoint: its changes are journaled (`fold_journal`) over the same prefix the
checkpoint moves over, so a kill neither loses a summary nor sends a folded repeat.
"""

import json
import logging
import math
import os
import random
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from falco_forwarder.alert_log import AlertLog
from falco_forwarder.burstlog import BurstLog
from falco_forwarder.checkpoint import Position
from falco_forwarder.config import JujuTopology, RetryConfig, SinkConfig
from falco_forwarder.fold_journal import FoldJournal
from falco_forwarder.folding import Candidate, Folding, FoldState, Op, Summary, falco_json
from falco_forwarder.metrics import DELIVERED, FOLDED, MALFORMED, RETRIED, UNMAPPABLE, Metrics
from falco_forwarder.reader import Line, LogReader
from falco_forwarder.sinks import Attempt, HttpSender, Outcome

logger = logging.getLogger(__name__)

# 2**60 times any sane initial delay is past any cap; stops the float from overflowing.
_MAX_DOUBLINGS = 60
MAX_IN_FLIGHT: Final = 64
# A sink answering faster than this gets one request at a time: strictly in order.
SLOW_ANSWER_SECONDS: Final = 0.01
# Requests in flight for a slow sink: enough for this rate at the answer time measured.
_TARGET_RATE: Final = 3000
_LATENCY_SAMPLES: Final = 8
# A batch: at most this many alerts or bytes (Loki and collectors take far more by default).
# As many lines at most go into one request or settled entry, folded ones too: the lock is
# held while they are read, and what they fold is committed and journaled as one record.
_BATCH_ALERTS: Final = 1000
_BATCH_BYTES: Final = 1024 * 1024
_READ_LINES: Final = 256
# Falco writes JSON objects with sorted keys, hostname first: where an alert begins when a
# write cut short (a full volume) left the start of another in front of it on the same line.
_ALERT_START: Final = b'{"hostname":'
# A worker waiting for alerts looks at the log this often even when nothing wakes it.
_IDLE_SECONDS: Final = 1.0
# Between two batches read at once, the lock is let go this long: a stop, a reload or the
# upkeep waiting for it gets it.
_YIELD_SECONDS: Final = 0.001
# How long a request cut off by a stop may take to notice.
_ABORT_SECONDS: Final = 0.5


@dataclass(eq=False)
class _Entry:
    """Lines of the log up to ``end``: a request to send, or only drops."""

    end: Position
    epoch: int
    body: bytes | None = None
    alerts: int = 0
    """Alerts in the body."""
    drops: list[str] = field(default_factory=list[str])
    """Why each line of the entry that is not sent was dropped."""
    folded: list[str] = field(default_factory=list[str])
    """The rule of each line of the entry folded into a summary."""
    ops: list[Op] = field(default_factory=list[Op])
    """How the entry changes the fold state, committed with it."""
    summaries: int = 0
    """Summaries in the body: they have no line of their own."""
    done: bool = False


class SinkWorker:
    """Threads delivering one sink's alerts; its settings are fixed.

    A reload replaces the worker, which resumes at the checkpoint.
    """

    def __init__(
        self,
        sink: SinkConfig,
        *,
        log: AlertLog,
        metrics: Metrics,
        retry: RetryConfig,
        juju: JujuTopology,
        fold_seconds: int = 0,
        journal: Path | None = None,
    ):
        """``fold_seconds`` 0 folds nothing; ``journal`` keeps the fold state across kills."""
        self._sink = sink
        self._name = sink.name
        self._log = log
        self._metrics = metrics
        self._retry = retry
        self._juju = juju
        self._format = sink.sink_format
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._outage = BurstLog(logger)
        self._refusals = BurstLog(logger)
        self._malformed = BurstLog(logger)
        self._cond = threading.Condition()
        self._stopping = False
        self._lanes: list[tuple[threading.Thread, HttpSender]] = []
        self._window = 1
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._measured = 0
        # Where delivery stands (under the condition):
        self._epoch = 0  # bumped on every restart from the checkpoint; older results are void
        self._generation = 0
        self._reader: LogReader | None = None
        self._lines: deque[Line] = deque()
        self._pending: deque[_Entry] = deque()
        self._in_flight = 0
        self._acked: set[Position] = set()  # delivered beyond a failure: not sent again
        self._failed = False  # a failure: drain what is in flight, back off, read again
        self._resume_at = 0.0
        self._attempts = 0
        self._alone_until: Position | None = None  # after a refused batch: one per request
        self._consumed: Position | None = None  # the end of the last line taken from `_lines`
        self._fold_seconds = fold_seconds
        self._journal = FoldJournal(journal) if journal else None
        self._committed = FoldState()  # the fold state at the checkpoint
        self._folding: Folding | None = None  # the fold state where reading stands

    def start(self) -> None:
        """Start delivering."""
        with self._cond:
            if self._journal is not None:
                self._committed = self._journal.load(self._log.position(self._name)[0])
            self._restart()
            self._add_lane()

    def sync(self) -> None:
        """Flush the fold journal to the disk (before the checkpoints are: the upkeep).

        The disk is waited for on a descriptor of its own, outside the lock: delivery goes on.
        """
        if self._journal is None:
            return
        with self._cond:
            fd = self._journal.descriptor()
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as e:
            with self._cond:
                self._journal.failed(e)  # rewritten whole at the next settle
        finally:
            os.close(fd)

    def wake(self) -> None:
        """The log changed: look for new alerts now (called by the log watch)."""
        with self._cond:
            self._cond.notify()

    def stop(self) -> None:
        """Send nothing more; requests in flight may still finish (see `join`)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, deadline: float) -> None:
        """Wait for the threads to end after `stop`, cutting off at ``deadline`` what is left.

        A request cut off is sent again by the next worker, from the checkpoint.
        """
        for thread, sender in list(self._lanes):
            thread.join(max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                sender.abort()
                thread.join(_ABORT_SECONDS)
        with self._cond:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._journal is not None:
                self._journal.close()

    # -- lanes ----------------------------------------------------------------------------------

    def _add_lane(self) -> None:
        sender = HttpSender(self._sink, self._retry.timeout_seconds)
        number = len(self._lanes)
        thread = threading.Thread(
            target=self._lane,
            args=(sender,),
            name=f"sink-{self._name}" if number == 0 else f"sink-{self._name}-{number}",
            daemon=True,
        )
        self._lanes.append((thread, sender))
        thread.start()

    def _lane(self, sender: HttpSender) -> None:
        """Send, and while the sink answers prepare the next request (read, parse, encode)."""
        try:
            with self._cond:
                entry = self._next(None)
            while entry is not None:
                assert entry.body is not None
                started = time.monotonic()
                attempt, upcoming = self._guarded(sender.send, entry.body), None
                if attempt is None:
                    with self._cond:
                        upcoming = self._ahead()
                    attempt = self._guarded(sender.receive)
                assert attempt is not None
                with self._cond:
                    self._finished(entry, attempt, time.monotonic() - started)
                    entry = self._next(upcoming)
        finally:
            sender.close()

    def _guarded(self, call: Callable[..., Attempt | None], *args: bytes) -> Attempt | None:
        try:
            return call(*args)
        except Exception as e:  # a bug must not end the sink's deliveries
            logger.exception("sink %s: sending failed unexpectedly", self._name)
            return Attempt(Outcome.RETRY, type(e).__name__)

    # -- taking work (under the condition) ------------------------------------------------------

    def _next(self, prepared: _Entry | None) -> _Entry | None:
        """The next request to send (``prepared`` if still good), waiting for one; None to stop."""
        while not self._stopping:
            if prepared is not None and (prepared.epoch != self._epoch or self._failed):
                prepared = None  # read again after the restart
            timeout = _IDLE_SECONDS
            try:
                if self._failed:
                    timeout = self._resume_at - time.monotonic()
                    if self._in_flight == 0 and timeout <= 0:
                        self._restart()
                        continue
                elif self._in_flight < self._window:
                    entry = prepared or self._take()
                    prepared = None
                    if entry is not None:
                        self._in_flight += 1
                        if self._in_flight < self._window:
                            self._cond.notify()  # another lane may take the next one
                        return entry
                    if self._peek_line() is not None:
                        timeout = _YIELD_SECONDS  # a batch only folded: more is waiting
            except Exception:
                # A bug or an OS error must not silently end this sink's deliveries: log,
                # count, wait, and start again from the checkpoint.
                logger.exception("sink %s: delivery failed unexpectedly", self._name)
                self._metrics.inc(RETRIED, sink=self._name)
                self._fail(self._retry.max_seconds)
                continue
            self._cond.wait(timeout if timeout > 0 else None if self._failed else _IDLE_SECONDS)
        return None

    def _ahead(self) -> _Entry | None:
        """The request after the one in flight, made ready while the sink answers."""
        if self._stopping or self._failed:
            return None
        try:
            return self._take()
        except Exception:
            return None  # `_next` meets the problem again, and handles it

    def _restart(self) -> None:
        """Read again from the checkpoint; results of requests sent before are void."""
        if self._reader is not None:
            self._reader.close()
        # What the sink acknowledged beyond the failure is not sent again.
        self._acked = {
            e.end for e in self._pending if e.done and e.body is not None and not e.summaries
        }
        position, self._generation = self._log.position(self._name)
        self._reader = LogReader(self._log, position)
        self._consumed = position
        committed = self._committed
        folds = self._fold_seconds or committed.windows
        self._folding = Folding(self._fold_seconds, committed.copy()) if folds else None
        self._lines.clear()
        self._pending.clear()
        self._epoch += 1
        self._failed = False

    def _take(self) -> _Entry | None:
        """Read and prepare the next request; entries that are only drops are settled here."""
        if self._log.generation(self._name) != self._generation:
            self._restart()  # the log moved this sink (retention, a cut): what it read is void
        entry, pieces = self._collect()
        if self._log.generation(self._name) != self._generation:
            # Reading on found the log cut under this sink, which moved it: read again.
            self._restart()
            return self._take()
        if not pieces:
            if entry.drops or entry.folded or entry.ops:
                entry.done = True
                self._pending.append(entry)
            self._advance()
            return None
        entry.alerts = len(pieces)
        frame = self._format.frame
        entry.body = pieces[0] if frame is None else frame(pieces, self._juju)
        self._pending.append(entry)
        return entry

    def _collect(self) -> tuple[_Entry, list[bytes]]:
        """The lines of the next request and their pieces (none if nothing is waiting).

        Lines the sink acknowledged already (beyond a failure) are settled as delivered. A
        summary comes before the line of its kind that closes its window (and before any line
        that needs the room it held); other windows that line is past close after it, at the
        next line or once nothing more is waiting. At most `_BATCH_ALERTS` lines are read.
        """
        assert self._consumed is not None
        limit = _BATCH_ALERTS if self._format.frame and self._alone_until is None else 1
        pieces: list[bytes] = []
        entry = _Entry(self._consumed, self._epoch)
        size = lines = 0
        line, parsed, candidate = None, None, None
        while len(pieces) < limit and size < _BATCH_BYTES and lines < _BATCH_ALERTS:
            if parsed is None:  # parsed once, however many summaries come before it
                line = self._peek_line()
                parsed = self._parse_line(line) if line else (b"", None, list[str]())
                folding, alert = self._folding, parsed[1]
                candidate = folding.candidate(alert, parsed[0]) if folding and alert else None
            data, alert, drops = parsed
            summary = self._due(candidate, idle=line is None)
            if summary is not None:
                piece = self._summary_piece(summary, entry)
                if piece is not None:
                    pieces.append(piece)
                    size += len(piece)
                continue  # the line, if any, comes after the summary
            if line is None:
                break
            self._lines.popleft()
            self._consumed = entry.end = line.end
            lines += 1
            parsed = None
            entry.drops.extend(drops)
            piece = self._fold_or_encode(alert, data, candidate, entry) if alert else None
            if piece is not None and line.end in self._acked:
                self._acked.discard(line.end)
                entry.done = True  # the sink has it already
                entry.alerts += 1
                self._pending.append(entry)
                entry = _Entry(line.end, self._epoch)
            elif piece is not None:
                pieces.append(piece)
                size += len(piece)
            if self._alone_until is not None and line.end >= self._alone_until:
                self._alone_until = None
                break
        return entry, pieces

    def _peek_line(self) -> Line | None:
        if not self._lines:
            assert self._reader is not None
            self._lines.extend(self._reader.read(_READ_LINES))
        return self._lines[0] if self._lines else None

    def _parse_line(self, line: Line) -> tuple[bytes, dict[str, Any] | None, list[str]]:
        """The alert ``line`` holds (None if none), its bytes, and what was dropped of it."""
        if line.oversized:
            self._malformed.event(
                "sink %s: skipped a line of the alert log over 16 MiB: %r", self._name, line.data
            )
            return line.data, None, [MALFORMED]
        data, drops = line.data, []
        alert = _parse(data)
        if alert is None and (start := data.find(_ALERT_START, 1)) > 0:
            # A write cut short (a full volume) left part of an alert before this one.
            data, drops = data[start:], [MALFORMED]
            alert = _parse(data)
        if alert is None:
            self._malformed.event(
                "sink %s: skipped a line of the alert log that is not a JSON object: %r",
                self._name,
                line.data[:120],
            )
            return data, None, [MALFORMED]
        if drops:
            self._malformed.event(
                "sink %s: skipped the start of an alert cut short in the alert log: %r",
                self._name,
                line.data[:120],
            )
        return data, alert, drops

    def _due(self, upcoming: Candidate | None, *, idle: bool) -> Summary | None:
        """A summary to send before ``upcoming`` (or, ``idle``, now), if a window closes first."""
        if self._folding is None:
            return None
        return self._folding.due(time.time_ns() if idle else None, upcoming)

    def _fold_or_encode(
        self, alert: dict[str, Any], data: bytes, candidate: Candidate | None, entry: _Entry
    ) -> bytes | None:
        """``alert``'s piece, or None if it was folded (or could not be mapped: a drop)."""
        if self._folding is not None:
            folded = candidate is not None and self._folding.admit(candidate)
            entry.ops.extend(self._folding.take_ops())
            if candidate is not None and folded:
                entry.folded.append(candidate.rule)
                return None
        return self._encode(alert, data, entry)

    def _summary_piece(self, summary: Summary, entry: _Entry) -> bytes | None:
        assert self._folding is not None
        entry.ops.extend(self._folding.take_ops())
        entry.summaries += 1
        return self._encode(summary.to_alert(), None, entry)

    def _encode(self, alert: dict[str, Any], data: bytes | None, entry: _Entry) -> bytes | None:
        """This sink's piece for ``alert`` (``data``: its line, None for a summary), or None."""
        encode = self._format.encode
        if encode is None:
            return falco_json(alert) if data is None else data
        try:
            return encode(alert, self._juju, self._sink.max_message_bytes)
        except Exception:
            # Retrying cannot help a mapping bug, and would hold back every later alert.
            logger.exception(
                "sink %s: cannot map an alert to %s; dropping it", self._name, self._sink.format
            )
            entry.drops.append(UNMAPPABLE)
            return None

    # -- results (under the condition) ----------------------------------------------------------

    def _finished(self, entry: _Entry, attempt: Attempt, latency: float) -> None:
        self._in_flight -= 1
        self._cond.notify()
        if entry.epoch != self._epoch:
            return  # sent before a restart: it will be read and sent again
        if attempt.outcome is Outcome.DELIVERED:
            entry.done = True
            if self._attempts:
                self._attempts = 0
                self._metrics.set_up(self._name, True)
            self._outage.end("sink %s: delivering again", self._name)
            self._refusals.end("sink %s: accepting alerts again", self._name)
            self._measure(latency)
            self._advance()
        elif self._stopping:
            return  # cut off by the stop
        elif attempt.outcome is Outcome.DROP:
            self._metrics.set_up(self._name, True)
            if entry.alerts > 1:  # find the alerts it refuses: send them one at a time
                self._alone_until = entry.end
                self._fail(0.0)
                return
            self._refusals.event(
                "sink %s (%s) refused an alert with %s; dropped it, not retrying",
                self._name,
                self._sink.safe_url,
                attempt.detail,
            )
            entry.drops.append(attempt.drop_reason)
            entry.alerts = 0
            entry.done = True
            self._advance()
        else:
            self._metrics.set_up(self._name, False)
            self._metrics.inc(RETRIED, sink=self._name)
            self._outage.event(
                "sink %s (%s) failed: %s; retrying with backoff",
                self._name,
                self._sink.safe_url,
                attempt.detail,
            )
            if not self._failed:
                delay = backoff_delay(self._attempts, attempt.retry_after, self._retry, self._rng)
                self._attempts += 1
                self._fail(delay)

    def _fail(self, delay: float) -> None:
        """Send nothing more; once what is in flight is back and ``delay`` passed, read again."""
        self._failed = True
        self._resume_at = time.monotonic() + delay
        self._cond.notify_all()

    def _advance(self) -> None:
        """Move the checkpoint over the settled prefix, and count what it holds."""
        delivered, drops, folded, ops, end = 0, list[str](), list[str](), list[Op](), None
        while self._pending and self._pending[0].done:
            entry = self._pending.popleft()
            delivered += entry.alerts
            drops.extend(entry.drops)
            folded.extend(entry.folded)
            ops.extend(entry.ops)
            end = entry.end
        if end is None:
            return
        if not self._commit(end, ops):
            self._restart()  # the log counted these when it moved the sink on
            return
        if delivered:
            self._metrics.inc(DELIVERED, delivered, sink=self._name)
        for reason in drops:
            self._metrics.drop(self._name, reason)
        for rule, count in Counter(folded).items():
            self._metrics.inc(FOLDED, count, sink=self._name, rule=rule)

    def _commit(self, end: Position, ops: list[Op]) -> bool:
        """Move the checkpoint and the fold state to ``end``; False if the log moved the sink."""
        journal = self._journal
        if ops:
            if journal is not None:
                journal.record(end, ops)  # first: a kill then replays only to the checkpoint
            for op in ops:
                self._committed.apply(op)
        if not self._log.commit(self._name, self._generation, end):
            return False
        if ops and journal is not None:
            journal.settle(end, self._committed)
        return True

    def _measure(self, latency: float) -> None:
        """Size the window from how long the sink takes to answer."""
        if self._format.frame is not None:
            return  # batches: one request at a time carries what waits
        self._latencies.append(latency)
        self._measured += 1
        if self._measured % _LATENCY_SAMPLES:
            return  # sized again every few answers
        answer = statistics.median(self._latencies)
        window = 1
        if answer >= SLOW_ANSWER_SECONDS:
            window = min(MAX_IN_FLIGHT, max(2, math.ceil(answer * _TARGET_RATE)))
        self._window = window
        while len(self._lanes) < window and not self._stopping:
            self._add_lane()


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        alert = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return alert if isinstance(alert, dict) else None  # pyright: ignore[reportUnknownVariableType]


def backoff_delay(
    attempts: int, retry_after: float | None, retry: RetryConfig, rng: random.Random
) -> float:
    """Seconds to wait after ``attempts`` failures: full jitter, stretched to any Retry-After.

    Full jitter draws uniformly below ``initial * 2**attempts``; a ``Retry-After: 0`` therefore
    never turns into a tight loop. Both are capped at ``max_seconds``.
    """
    ceiling = retry.initial_seconds * 2 ** min(attempts, _MAX_DOUBLINGS)
    delay = rng.uniform(0, min(ceiling, retry.max_seconds))
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry.max_seconds))
    return delay
