"""Feeds the spooled batches, in order, to Falco's k8saudit on the pod's loopback.

k8saudit answers 200 as soon as a batch sits in its in-memory queue (a channel of 50 bodies),
before Falco evaluates it, and drops that queue when its listener closes at a Falco stop,
restart or hot reload (``plugins/k8saudit/pkg/k8saudit/source.go``, k8saudit 0.18.0:
``WriteHeader(200)`` then ``sendBody``). So a 200 does not settle a batch. The feed posts on
one kept-alive connection, which the listener closes whenever it stops; a batch settles once
that connection has stayed open ``settle_seconds`` after its 200, long enough for Falco to have
drained the queue. If the connection goes away first, every batch answered on it and not yet
settled is sent again: counted as replayed, since Falco may have evaluated some already.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from audit_intake.eventlist import count_events
from audit_intake.metrics import (
    DROPPED_EVENTS,
    FALCO_ANSWERS,
    REFUSED_BY_K8SAUDIT,
    REPLAYED_BATCHES,
    REPLAYED_EVENTS,
    UNREACHABLE,
    IntakeMetrics,
)
from audit_intake.spool import Spool, SpooledBatch

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.2  # how often an idle feed looks at its connection and settles
RETRY_INITIAL_SECONDS: Final = 0.2
RETRY_MAX_SECONDS: Final = 5.0
POST_TIMEOUT_SECONDS: Final = 30.0
STOP_SECONDS: Final = 5.0
# The generation of an answer that closed its own connection: no liveness to watch, so the
# batch settles on time alone (k8saudit keeps connections open; another server may not).
_NO_LIVENESS: Final = -1


@dataclass
class _Entry:
    batch: SpooledBatch
    events: int
    answered_at: float | None = None
    generation: int = 0
    dropped: bool = False

    @property
    def done(self) -> bool:
        """Answered (200) or given up: nothing to post, only to settle."""
        return self.dropped or self.answered_at is not None


class FalcoFeed:
    """Posts every spooled batch to ``url`` until Falco has it; `enqueue` adds new ones."""

    def __init__(
        self,
        spool: Spool,
        url: str,
        settle_seconds: float,
        metrics: IntakeMetrics,
        clock: Callable[[], float] = time.monotonic,
    ):
        parts = urlsplit(url)
        self._host, self._port, self._path = parts.hostname or "", parts.port or 80, parts.path
        self._spool = spool
        self._settle_seconds = settle_seconds
        self._metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: deque[_Entry] = deque()
        self._cursor = 0  # entries before it are done
        self._connection: http.client.HTTPConnection | None = None
        self._generation = 0
        self._stopping = False
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="falco-feed", daemon=True)
        for batch in spool.recovered:
            # Kept from before a restart: Falco may or may not have evaluated them.
            events = count_events(spool.read(batch))
            self._entries.append(_Entry(batch, events))
            self._replayed(events)
        if spool.recovered:
            logger.info("replaying %d batches kept from before the restart", len(spool.recovered))

    @property
    def alive(self) -> bool:
        """Whether the feeding thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start feeding."""
        self._thread.start()

    def enqueue(self, batch: SpooledBatch, events: int) -> None:
        """A batch just kept in the spool: post it after those before it."""
        with self._cond:
            self._entries.append(_Entry(batch, events))
            self._cond.notify()

    def stop(self) -> None:
        """Stop feeding: a post in flight is cut short; the spool keeps what is unsettled."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        delay = RETRY_INITIAL_SECONDS
        while True:
            with self._cond:
                if not self._stopping and self._pending() is None:
                    self._cond.wait(POLL_SECONDS)
                if self._stopping:
                    break
            self._watch_connection()
            self._settle()
            entry = self._pending()
            if entry is None:
                continue
            if self._post(entry):
                delay = RETRY_INITIAL_SECONDS
                continue
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
        if self._connection is not None:
            self._connection.close()

    def _pending(self) -> _Entry | None:
        """The next entry to post, or None."""
        with self._cond:
            while self._cursor < len(self._entries) and self._entries[self._cursor].done:
                self._cursor += 1
            return self._entries[self._cursor] if self._cursor < len(self._entries) else None

    def _post(self, entry: _Entry) -> bool:
        """Post one batch; True when k8saudit answered for good (taken, or refused for ever)."""
        body = self._spool.read(entry.batch)
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=POST_TIMEOUT_SECONDS
            )
        connection = self._connection
        try:
            connection.request(
                "POST", self._path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._metrics.inc(FALCO_ANSWERS, code=UNREACHABLE)
            if self._down_since is None:
                self._down_since = self._clock()
                logger.warning("k8saudit unreachable (%s): keeping batches, retrying", exc)
            self._lose_connection()
            return False
        if self._down_since is not None:
            logger.info("k8saudit answers again after %.1f s", self._clock() - self._down_since)
            self._down_since = None
        status = response.status
        self._metrics.inc(FALCO_ANSWERS, code=str(status))
        if status == 200:
            entry.answered_at = self._clock()
            entry.generation = _NO_LIVENESS if response.will_close else self._generation
        elif 400 <= status < 500:
            logger.error(
                "k8saudit refused batch %d (%d events) with HTTP %d: given up",
                entry.batch.seq,
                entry.events,
                status,
            )
            entry.dropped = True
            self._metrics.inc(DROPPED_EVENTS, entry.events, reason=REFUSED_BY_K8SAUDIT)
        if response.will_close:
            self._lose_connection()  # its earlier answers lose their liveness signal
        return entry.done

    def _watch_connection(self) -> None:
        """Notice a connection k8saudit closed: its listener went away, and its queue with it."""
        connection = self._connection
        if connection is None or connection.sock is None:
            return
        sock: socket.socket = connection.sock
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return  # open and quiet
            # k8saudit never speaks first: readable means closed (or garbage: trust neither).
        except (OSError, ValueError):
            pass
        self._lose_connection()

    def _lose_connection(self) -> None:
        """The connection is gone: batches answered on it and not settled are sent again."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        with self._cond:
            resend = [
                entry
                for entry in self._entries
                if entry.answered_at is not None and entry.generation == self._generation
            ]
            for entry in resend:
                entry.answered_at = None
                self._replayed(entry.events)
            self._cursor = 0
            self._generation += 1
        if resend:
            logger.warning("k8saudit's listener went away: replaying %d batches", len(resend))

    def _replayed(self, events: int) -> None:
        self._metrics.inc(REPLAYED_BATCHES)
        self._metrics.inc(REPLAYED_EVENTS, events)

    def _settle(self) -> None:
        """Settle, in order, the batches Falco has had long enough on a connection still open."""
        now = self._clock()
        alive = self._connection is not None
        through = None
        with self._cond:
            while self._entries and self._entries[0].done:
                entry = self._entries[0]
                if not entry.dropped:
                    assert entry.answered_at is not None
                    if now - entry.answered_at < self._settle_seconds:
                        break
                    if entry.generation != _NO_LIVENESS and not (
                        alive and entry.generation == self._generation
                    ):
                        break
                self._entries.popleft()
                self._cursor = max(self._cursor - 1, 0)
                through = entry.batch.seq
        if through is not None:
            self._spool.settle(through)
