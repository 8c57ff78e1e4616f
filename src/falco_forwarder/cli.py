"""Command line entry point: ``python3 -m falco_forwarder --config PATH``.

SIGHUP re-reads PATH and applies it in place (see `Forwarder.reload`); an invalid file is
logged and the running configuration kept.
Exits 0 after SIGTERM or SIGINT (graceful stop), 2 on an invalid configuration at
start and 1 if the service cannot start (e.g. the port is taken).
"""

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from falco_forwarder.config import ConfigError, load_config
from falco_forwarder.forwarder import Forwarder

logger = logging.getLogger("falco_forwarder")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP)
_HANDLED = frozenset(int(sig) for sig in _SIGNALS)
_SWITCH_SECONDS = 0.001


def main(argv: Sequence[str] | None = None) -> int:
    """Run the forwarder until a stop signal, reloading on SIGHUP; return the exit status."""
    # Handlers first: a SIGHUP sent while the process is still starting must not kill it (the
    # default action). The kernel may deliver a signal to any thread, and a Python handler only
    # runs once the main thread executes bytecode, so a main thread blocked on a queue could
    # sleep through it. Instead the C-level handler writes the signal number to a socket the
    # main thread reads (set_wakeup_fd), which wakes it whichever thread took the signal; the
    # reload then runs in the main thread, never inside a handler.
    reader, writer = socket.socketpair()
    with reader, writer:
        writer.setblocking(False)  # set_wakeup_fd requires it
        # The socket first, then the handlers (and the reverse at the end): a signal never
        # meets a handler without the socket to record it.
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, _ignore) for sig in _SIGNALS}
        try:
            return _serve(argv, lambda: _next_signal(reader))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Installed so the C handler runs and writes to the wakeup socket; the work is elsewhere."""


def _next_signal(reader: socket.socket) -> signal.Signals:
    """Block until one of the handled signals arrives (other numbers on the socket are skipped)."""
    while True:
        for number in reader.recv(1):
            if number in _HANDLED:
                return signal.Signals(number)


def _serve(argv: Sequence[str] | None, next_signal: Callable[[], signal.Signals]) -> int:
    parser = argparse.ArgumentParser(
        prog="falco_forwarder",
        description="Deliver Falco's JSON alert log to sinks. "
        "SIGHUP reloads the configuration file live; SIGTERM or SIGINT stops.",
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="JSON configuration file, re-read on SIGHUP"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    # A worker woken by a new alert gets the interpreter within a millisecond, not five, of
    # the upkeep or another sink's worker holding it: the latency from Falco to the sink.
    sys.setswitchinterval(_SWITCH_SECONDS)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as e:
        logger.error("invalid configuration: %s", e)
        return 2
    try:
        forwarder = Forwarder(config)
    except OSError as e:
        logger.error("cannot start: %s", e)
        return 1
    with forwarder:
        while (signum := next_signal()) is signal.SIGHUP:
            logger.info("received SIGHUP, reloading %s", args.config)
            forwarder.reload(args.config)
        logger.info("received %s, stopping", signum.name)
    return 0
