"""Command line entry point: ``python3 -m falco_forwarder --config PATH``.

SIGHUP re-reads PATH and applies it without closing the listener (see
`Forwarder.reload`); an invalid file is logged and the running configuration kept.
Exits 0 after SIGTERM or SIGINT (graceful stop), 2 on an invalid configuration at
start and 1 if the service cannot start (e.g. the port is taken).
"""

import argparse
import logging
import queue
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from falco_forwarder.config import ConfigError, load_config
from falco_forwarder.forwarder import Forwarder

logger = logging.getLogger("falco_forwarder")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the forwarder until a stop signal, reloading on SIGHUP; return the exit status."""
    # Handlers first: a SIGHUP sent while the process is still starting must not kill it (the
    # default action). They only queue the signal (SimpleQueue.put is safe in a handler); the
    # main thread acts on it, so a reload never runs inside a handler.
    received: queue.SimpleQueue[signal.Signals] = queue.SimpleQueue()

    def enqueue(signum: int, _frame: FrameType | None) -> None:
        received.put(signal.Signals(signum))

    previous = {sig: signal.signal(sig, enqueue) for sig in (*_STOP_SIGNALS, signal.SIGHUP)}
    try:
        return _serve(argv, received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(argv: Sequence[str] | None, received: queue.SimpleQueue[signal.Signals]) -> int:
    parser = argparse.ArgumentParser(
        prog="falco_forwarder",
        description="Fan Falco http_output alerts out to sinks. "
        "SIGHUP reloads the configuration file live; SIGTERM or SIGINT stops.",
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="JSON configuration file, re-read on SIGHUP"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
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
        while (signum := received.get()) is signal.SIGHUP:
            logger.info("received SIGHUP, reloading %s", args.config)
            forwarder.reload(args.config)
        logger.info("received %s, stopping", signum.name)
    return 0
